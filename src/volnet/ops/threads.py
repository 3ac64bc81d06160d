"""Split a batch of images over the cores, with NumPy's BLAS single-threaded meanwhile.

BLAS spreads one matrix multiply over every core, which pays when the
matrices are large. The shallow Winograd layers of a small ConvNet (32
filters on 32 channels) make many multiplies with results only D x K, too
small for BLAS to split, and between them the compiled tile transforms run
on one core. There each core does better with its own share of the images:
:func:`split` runs ``work(start, stop)`` for one contiguous part of the
batch per core, each on its own thread, while BLAS runs one thread per call.

BLAS's idle threads spin for a while (about 0.1 s in OpenBLAS) after each
multiply that used them, on the very cores a split wants. A whole network
pass therefore holds the cores (:func:`network_pass`, which
:class:`volnet.net.Sequential` enters): BLAS runs one thread from the first
layer to the last, and every layer that can split its batch does. Pooling
and ReLU, which call no BLAS, split wherever their parts are big enough
(:func:`memory_workers`), in a pass or not.

This needs threadpoolctl (installed with ``volnet[fast]``) to turn BLAS's
threads down and back; without it :func:`cores` is 1 and every kernel runs
its blocks in order, with BLAS's threads. The work functions must release
the GIL (NumPy's multiplies and copies, and volnet's ``nogil`` Numba
kernels do).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the module itself is imported at the first split (_threads): volnet imports quicker
    from concurrent.futures import ThreadPoolExecutor

# A part with fewer multiply-adds than this (about 0.1-0.2 ms on one core) is not worth
# another thread: waking it, and its wait for the GIL, cost as much, and the parts of a
# tiny layer would not even run at the same time.
MIN_PART_MULTIPLY_ADDS = 2**24
# The same for kernels that stream memory rather than multiply (pooling, ReLU): bytes read and written.
MIN_PART_BYTES = 2**20

_blas = None  # NumPy's BLAS libraries as threadpoolctl sees them, found on first use
# Held while BLAS is turned down to one thread. A split or pass in another thread at
# the same time would read "1 thread" as the setting to restore; it leaves BLAS alone.
_single_threaded_blas = threading.Lock()
_holder: int | None = None  # the thread inside a network_pass, if any
_held_cores = 1  # BLAS's thread count when that pass began
# The threads that take the parts after the first. They live as long as the process
# (after a fork the child makes its own): a new thread's first BLAS call sets up
# OpenBLAS's per-thread buffers, which made a split with fresh threads slower than none.
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _threadpoolctl():
    """The threadpoolctl module, imported at the first split rather than with volnet (it takes about 50 ms);
    None where it is not installed: kernels then run their blocks one after another."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


def __getattr__(name):  # ``threads.threadpoolctl``: the module or None, as _threadpoolctl() finds it
    if name == "threadpoolctl":
        return _threadpoolctl()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _numpy_blas():
    global _blas
    if _blas is None:
        threadpoolctl = _threadpoolctl()
        _blas = threadpoolctl.ThreadpoolController().select(user_api="blas") if threadpoolctl else False
    return _blas


def _threads(count: int) -> ThreadPoolExecutor:
    """The shared pool, grown to at least ``count`` threads."""
    global _pool, _pool_size
    if _pool is None or _pool_size < count:
        from concurrent.futures import ThreadPoolExecutor

        _pool, _pool_size = ThreadPoolExecutor(count, thread_name_prefix="volnet"), count
    return _pool


def _forget_pool():  # after os.fork: the parent's threads do not exist in the child
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def cores() -> int:
    """The cores a split may use: BLAS's thread count (1 without threadpoolctl), or within a network pass
    the count it had when the pass began."""
    if holding():
        return _held_cores
    blas = _numpy_blas()
    if not blas or not blas.lib_controllers:
        return 1
    return max(1, min(lib.num_threads for lib in blas.lib_controllers))


def worth(multiply_adds: int, count: int, workers: int) -> int:
    """``workers``, but no more than ``count`` parts nor parts under :data:`MIN_PART_MULTIPLY_ADDS` each."""
    return max(1, min(workers, count, multiply_adds // MIN_PART_MULTIPLY_ADDS))


def pass_workers(multiply_adds: int, count: int) -> int:
    """Threads for a kernel that splits only within a network pass (its ``count`` rows or images holding
    ``multiply_adds`` in all): there every core (see :func:`worth`), elsewhere one, where BLAS's own
    threads use the cores."""
    return worth(multiply_adds, count, _held_cores if holding() else 1)


def memory_workers(nbytes: int, count: int) -> int:
    """Threads for a kernel that streams ``nbytes`` of memory over ``count`` images and calls no BLAS (pooling,
    ReLU): every core, within a network pass or not, for parts of at least :data:`MIN_PART_BYTES` (measured
    on 2 cores, 64x32x32x32 float32: max pooling forward and backward 0.53x the time, ReLU's backward 0.62x)."""
    parts = min(count, nbytes // MIN_PART_BYTES)
    return 1 if parts < 2 else min(cores(), parts)  # (cores() only where it matters: it asks BLAS)


def holding() -> bool:
    """Whether this thread is inside a :func:`network_pass` that holds the cores."""
    return _holder == threading.get_ident()


@contextmanager
def network_pass(images: int):
    """Hold the cores for one pass of a network over a batch of ``images``: BLAS one thread throughout.

    Within it, :func:`holding` is True and the kernels split every layer
    they can (see :func:`volnet.ops.winograd.workers`). A batch of one
    image, one core, a pass already held by this thread (nested networks)
    or by another thread: nothing changes.
    """
    global _holder, _held_cores
    count = cores()
    if holding() or images < 2 or count < 2 or not _single_threaded_blas.acquire(blocking=False):
        yield
        return
    try:
        limiter = _numpy_blas().limit(limits=1)
        _holder, _held_cores = threading.get_ident(), count
        try:
            yield
        finally:
            _holder = None
            limiter.restore_original_limits()
    finally:
        _single_threaded_blas.release()


def parts(images: int, workers: int) -> list[tuple[int, int]]:
    """``workers`` contiguous ``(start, stop)`` parts of ``range(images)``, sizes differing by at most one."""
    workers = max(1, min(workers, images))
    bounds = [images * i // workers for i in range(workers + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def split(work, count: int, workers: int) -> list:
    """The results of ``work(start, stop)`` for each of ``parts(count, workers)``, each part on its own thread.

    ``work`` is a generator function that yields once, after allocating its
    buffers, and returns its result: every part's allocations run first, in
    order on the calling thread, so a split's memory peak holds every part's
    buffers however the threads are timed (as ``volnet.analysis`` counts
    them); then the parts run side by side, the calling thread taking the
    first. While they run, NumPy's BLAS is limited to one thread (already so
    within a network pass) and restored afterwards, also on errors. With one
    worker, or while another thread holds BLAS, the parts run in order on
    this thread.
    """
    if workers <= 1 or count <= 1:  # the common case at batch 1: no more overhead than a call
        return [_finish(_prepare(work, 0, count))]
    prepared = [_prepare(work, *chunk) for chunk in parts(count, workers)]
    if holding():
        return _run(prepared)
    if not _numpy_blas() or not _single_threaded_blas.acquire(blocking=False):
        return [_finish(part) for part in prepared]
    try:
        limiter = _numpy_blas().limit(limits=1)
        try:
            return _run(prepared)
        finally:
            limiter.restore_original_limits()
    finally:
        _single_threaded_blas.release()


def _prepare(work, start: int, stop: int):
    part = work(start, stop)
    next(part)  # up to its yield: the part's buffers
    return part


def _finish(part):
    try:
        next(part)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a part of a split must yield exactly once, after allocating its buffers")


def _run(prepared) -> list:
    from concurrent.futures import wait

    pool = _threads(len(prepared) - 1)
    others = [pool.submit(_finish, part) for part in prepared[1:]]
    try:
        first = _finish(prepared[0])
    finally:  # the other parts must finish before BLAS gets its threads back
        wait(others)
    return [first] + [future.result() for future in others]
