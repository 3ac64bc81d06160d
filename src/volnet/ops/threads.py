"""Split a batch of images over the cores, with NumPy's BLAS single-threaded meanwhile.

BLAS spreads one matrix multiply over every core, which pays when the matrices are large; a small ConvNet's kernels
do better with each core's own share of the images: :func:`split` runs ``work(start, stop)`` for one contiguous part
of the batch per core, each on its own thread, while BLAS runs one thread per call (:func:`split_compiled` where the
parts are calls of compiled kernels).

BLAS's idle threads spin for a while (about 0.1 s in OpenBLAS) after each multiply that used them, on the very cores
a split wants. A whole network pass therefore holds the cores: :meth:`Scheduler.network_pass` (which
:class:`volnet.net.Sequential` enters for each forward and backward) turns BLAS down to one thread from the first
layer to the last and gives the pass a :class:`Workers`, which the network hands to every layer and each layer to
its kernels (their ``workers`` argument). A kernel's split depends on that argument alone:

- ``Workers(cores, blas_held=True)`` (a network pass): every kernel splits
  its batch over the cores where the parts are big enough (:func:`workers_for`).
- ``Workers(cores)`` (a kernel called on its own; ``workers=None`` is
  :func:`alone`): kernels that multiply through BLAS run in one piece on
  BLAS's threads; thin Winograd layers, pooling and ReLU still split, BLAS
  turned down to one thread while they do.

The rules themselves are pure functions of numbers (:func:`workers_for`,
:func:`memory_workers_for`, :func:`parts`), so ``volnet.analysis`` predicts
the same parts the kernels cut. The process's BLAS switch and its pool of
threads are one :class:`Scheduler` object (:func:`scheduler`); a pool that
is replaced by a bigger one is shut down, and a forked child makes its own.

This needs threadpoolctl (installed with ``volnet[fast]``) to turn BLAS's
threads down and back; without it :func:`cores` is 1 and every kernel runs
its blocks in order, with BLAS's threads. The work must release the GIL.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import blas_warmup, native_blas
from .placement import Placement

if TYPE_CHECKING:  # the module itself is imported at the first split (Scheduler._threads): volnet imports quicker
    from .handoff import BlockingPool, SpinningPool

# A part with fewer multiply-adds than this (about 0.1-0.2 ms on one core) is not worth
# another thread: waking it, and its wait for the GIL, cost as much, and the parts of a
# tiny layer would not even run at the same time.
MIN_PART_MULTIPLY_ADDS = 2**24
# The same for kernels that stream memory rather than multiply (pooling, ReLU): bytes read and written.
MIN_PART_BYTES = 2**20


# A forward pass over one image splits each layer's output over the cores (Workers.split_rows) where the network
# does at least this many multiply-adds an image: below it the split's own cost (holding BLAS, asking whether the
# split can run: 5 us a pass, more in its layers) outweighed what it gained (LeNet-5, 0.4 million: 0.137 ->
# 0.152 ms; LeNet, 3 million: 0.157 -> 0.161; cifar-ref, 27 million, gained 0.76x; the Intel Xeon).
SPLIT_IMAGE_MULTIPLY_ADDS = 2**22


# -- the rules: worker counts from explicit numbers ----------------------------------------------------------


def workers_for(multiply_adds: int, count: int, cores: int, minimum: int | None = None) -> int:
    """Threads for ``count`` images (or rows) holding ``multiply_adds`` in all, on ``cores`` cores: no more
    than ``count`` parts, nor parts under ``minimum`` multiply-adds each (default
    :data:`MIN_PART_MULTIPLY_ADDS`)."""
    return max(1, min(cores, count, multiply_adds // (minimum or MIN_PART_MULTIPLY_ADDS)))


def memory_workers_for(nbytes: int, count: int, cores: int, minimum: int | None = None) -> int:
    """Threads for a kernel that streams ``nbytes`` of memory over ``count`` images and calls no BLAS (pooling,
    ReLU): every core, for parts of at least ``minimum`` bytes (default :data:`MIN_PART_BYTES`): such kernels
    are bound by memory bandwidth, which one core does not saturate (the gain: docs/performance-log.md)."""
    parts = min(count, nbytes // (minimum or MIN_PART_BYTES))
    return 1 if parts < 2 else min(cores, parts)


def parts(images: int, workers: int) -> list[tuple[int, int]]:
    """``workers`` contiguous ``(start, stop)`` parts of ``range(images)``, sizes differing by at most one."""
    workers = max(1, min(workers, images))
    bounds = [images * i // workers for i in range(workers + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


# -- what a kernel is given ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workers:
    """The threads one kernel call may split its batch over: its ``workers`` argument.

    ``cores`` threads at most (None: BLAS's thread count, :func:`cores`,
    asked only where a split is worth it); ``blas_held``: BLAS already runs
    one thread (within :meth:`Scheduler.network_pass`, which is where such a
    Workers comes from), so kernels that multiply through BLAS split too.
    ``split_rows``: a forward pass over one image, whose kernels split its output over Numba's threads
    (:func:`volnet.ops.native_blas.split_threads`). Kernels given None take :func:`alone`, ``Workers()``.

    Example:
        >>> Workers(cores=4, blas_held=True).for_multiply_adds(10**12, 64)
        4
        >>> Workers(cores=4).for_multiply_adds(10**12, 64)   # BLAS's own threads take the cores
        1
    """

    cores: int | None = None
    blas_held: bool = False
    split_rows: bool = False

    def count(self) -> int:
        """``cores``, or BLAS's thread count now where it is None (asking BLAS takes about 8 us)."""
        return cores() if self.cores is None else self.cores

    def for_multiply_adds(self, multiply_adds: int, count: int) -> int:
        """Threads for a kernel that multiplies through BLAS: :func:`workers_for` with BLAS held, else one."""
        return workers_for(multiply_adds, count, self.count()) if self.blas_held else 1

    def for_bytes(self, nbytes: int, count: int, minimum: int | None = None) -> int:
        """Threads for a kernel that streams memory (pooling, ReLU): :func:`memory_workers_for`."""
        parts = memory_workers_for(nbytes, count, count, minimum)  # (BLAS asked only where parts are worth it)
        return parts if parts < 2 else min(parts, self.count())

    def split(self, work, count: int, workers: int) -> list:
        """:func:`split` with this call's BLAS state."""
        return _SCHEDULER.split(work, count, workers, blas_held=self.blas_held)

    def rows(self) -> int:
        """Numba's threads for a kernel that splits one image's output (``split_rows``), else 1."""
        return native_blas.split_threads(self.cores) if self.split_rows else 1


SERIAL = Workers(1)  # one thread: every kernel in one piece


# -- the process's BLAS switch and threads -------------------------------------------------------------------


class Scheduler:
    """NumPy's BLAS thread setting and the pool of threads that take the parts of a split.

    BLAS's setting belongs to the process, so there is one (:func:`scheduler`).
    ``cores()`` asks BLAS for its thread count; :meth:`network_pass` holds
    BLAS to one thread for a pass and gives the :class:`Workers` of that pass;
    :meth:`split` runs the parts. The pool lives as long as the scheduler
    (a new thread's first BLAS call sets up OpenBLAS's per-thread buffers,
    which made a split with fresh threads slower than none); one replaced by a
    bigger pool is shut down; after ``os.fork`` the child makes its own.
    """

    def __init__(self):
        self._blas = None  # NumPy's BLAS libraries as threadpoolctl sees them, found on first use
        self._blas_warmed = False  # whether warm_blas has run
        # Held while BLAS is turned down to one thread. A split or pass in another thread at
        # the same time would read "1 thread" as the setting to restore; it leaves BLAS alone.
        self._single_threaded_blas = threading.Lock()
        self._holder: int | None = None  # the thread inside a network pass, if any
        self._held: Workers | None = None  # that pass's workers
        self._pool: SpinningPool | BlockingPool | None = None
        self._pool_size = 0
        self._pool_lock = threading.Lock()
        self._pool_busy = threading.Lock()  # held by the split whose parts the pool's workers run
        if hasattr(os, "register_at_fork"):  # (a weak reference: the callback cannot be unregistered)
            alive = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: alive() and alive()._after_fork_in_child())

    def blas(self):
        """NumPy's BLAS libraries (a threadpoolctl ``ThreadpoolController`` selection); False without threadpoolctl."""
        if self._blas is None:
            threadpoolctl = _threadpoolctl()
            self._blas = threadpoolctl.ThreadpoolController().select(user_api="blas") if threadpoolctl else False
        return self._blas

    def warm_blas(self) -> None:
        """Once per process, before BLAS's first real work: :func:`volnet.ops.blas_warmup.warm` from each of
        :meth:`cores` threads at once, so that every part of a split finds BLAS warm."""
        if self._blas_warmed:
            return
        self._blas_warmed = True
        blas_warmup.warm(self.blas(), self.cores)

    def cores(self) -> int:
        """The cores a split may use: BLAS's thread count now (1 without threadpoolctl)."""
        blas = self.blas()
        if not blas or not blas.lib_controllers:
            return 1
        return max(1, min(lib.num_threads for lib in blas.lib_controllers))

    def holding(self) -> bool:
        """Whether this thread is inside a :meth:`network_pass` that holds the cores."""
        return self._holder == threading.get_ident()

    @contextmanager
    def network_pass(self, images: int, split_image: bool = False):
        """Hold the cores for one pass of a network over a batch of ``images``; gives the pass's :class:`Workers`.

        Within it BLAS runs one thread and the workers are ``Workers(cores, blas_held=True)``, ``cores``
        being BLAS's thread count when the pass began; one image with ``split_image`` (a forward pass of
        :data:`SPLIT_IMAGE_MULTIPLY_ADDS` or more), where :func:`volnet.ops.native_blas.split_threads` can
        split its layers' outputs: the same, with ``split_rows``. Any other batch of one image, one core, or a
        pass held by another thread: BLAS is left alone and the workers are :func:`alone`'s (with the cores
        counted). A pass entered again by the thread that holds one (nested networks) gives that pass's workers.

        Example:
            >>> with scheduler().network_pass(1) as workers:   # one image: nothing to split
            ...     workers.blas_held
            False
        """
        if self.holding():
            yield self._held
            return
        self.warm_blas()
        count = self.cores()
        lock = self._single_threaded_blas  # (after a fork the child has a new one; this pass releases its own)
        split_rows = images < 2 and split_image and count > 1 and native_blas.split_threads(count) > 1
        if (images < 2 and not split_rows) or count < 2 or not lock.acquire(blocking=False):
            yield Workers(count)
            return
        try:
            with self._one_blas_thread():
                self._holder, self._held = threading.get_ident(), Workers(count, True, split_rows)
                try:
                    yield self._held
                finally:
                    self._holder = self._held = None
        finally:
            lock.release()

    @contextmanager
    def _one_blas_thread(self):
        """NumPy's BLAS on one thread, each library's count restored afterwards (also on errors); set directly:
        threadpoolctl's limiter took 4.2 us a pass, this 1.5 (the Intel Xeon; LeNet's batch 1: 150 us)."""
        libraries = self.blas().lib_controllers
        counts = [library.num_threads for library in libraries]
        for library in libraries:
            library.set_num_threads(1)
        try:
            yield
        finally:
            for library, count in zip(libraries, counts):
                library.set_num_threads(count)

    def split(self, work, count: int, workers: int, *, blas_held: bool = False) -> list:
        """See :func:`split`."""
        if workers <= 1 or count <= 1:  # the common case at batch 1: no more overhead than a call
            return [_finish(_prepare(work, 0, count))]
        prepared = [_prepare(work, *chunk) for chunk in parts(count, workers)]

        def post(pool, worker: int, cpu: int | None) -> None:
            pool.run(worker, functools.partial(_on, cpu, _finish, prepared[worker + 1]))

        outcome = self._on_cores(len(prepared), post, lambda: _finish(prepared[0]), blas_held)
        return [_finish(part) for part in prepared] if outcome is None else outcome

    def split_compiled(self, calls_of, count: int, workers: int, *, blas_held: bool = False) -> None:
        """See :func:`split_compiled`."""
        chunks = parts(count, workers)
        if len(chunks) < 2:  # (one part: called directly, as split's)
            _make(calls_of(0, count))
            return
        kept = []  # the workers' calls: their arrays stay alive until the parts have ended

        def post(pool, worker: int, cpu: int | None) -> None:
            calls = calls_of(*chunks[worker + 1])
            kept.append(calls)
            if not pool.run_calls(worker, calls, cpu):
                pool.run(worker, functools.partial(_on, cpu, _make, calls))

        if self._on_cores(len(chunks), post, lambda: _make(calls_of(*chunks[0])), blas_held) is None:
            for chunk in chunks:
                _make(calls_of(*chunk))

    def _on_cores(self, count: int, post, first, blas_held: bool) -> list | None:
        """Parts side by side, BLAS on one thread: ``post(pool, worker, cpu)`` gives parts 1..count-1 to the pool's
        workers (to run on ``cpu``, or where they are: None), then ``first()`` runs part 0 here. Their results, or
        None where the cores are taken (by another thread's split or pass): nothing ran, run them in order."""
        if blas_held:
            return self._run(count, post, first)
        lock = self._single_threaded_blas
        if not self.blas() or not lock.acquire(blocking=False):
            return None
        try:
            with self._one_blas_thread():
                return self._run(count, post, first)
        finally:
            lock.release()

    def _threads(self, count: int) -> SpinningPool | BlockingPool:
        """The pool, grown to at least ``count`` threads (:func:`volnet.ops.handoff.pool`: spinning where
        Numba runs on x86-64); a pool it replaces is shut down."""
        with self._pool_lock:
            if self._pool is None or self._pool_size < count:
                from . import handoff

                old, self._pool = self._pool, handoff.pool(count)
                self._pool_size = count
                if old is not None:
                    old.close()  # idle: a split waits for its parts before it returns
            return self._pool

    def _run(self, count: int, post, first) -> list | None:
        if not self._pool_busy.acquire(blocking=False):  # another thread's split (or a part's own) has it
            return None
        try:
            pool, others = self._threads(count - 1), count - 1
            with _PLACEMENT.pinned(count) as cpus:  # side by side, not one after the other (placement.py)
                for worker, cpu in enumerate(cpus):
                    post(pool, worker, cpu)
                try:
                    outcome = first()
                finally:  # the other parts must finish before BLAS gets its threads back
                    rest = pool.results(others)
            return [outcome] + rest
        finally:
            self._pool_busy.release()

    def close(self) -> None:
        """Shut the pool's threads down (a later split starts new ones)."""
        with self._pool_lock:
            pool, self._pool, self._pool_size = self._pool, None, 0
        if pool is not None:
            pool.close(wait=True)

    def _after_fork_in_child(self) -> None:
        # The parent's threads do not exist in the child, and a lock another parent thread held stays held.
        self._pool, self._pool_size = None, 0
        self._pool_lock, self._pool_busy = threading.Lock(), threading.Lock()
        self._single_threaded_blas = threading.Lock()
        if not self.holding():
            self._holder = self._held = None


_SCHEDULER = Scheduler()
_PLACEMENT = Placement()


def scheduler() -> Scheduler:
    """The process's :class:`Scheduler`."""
    return _SCHEDULER


def cores() -> int:
    """BLAS's thread count now: the cores a split may use (``scheduler().cores()``)."""
    return _SCHEDULER.cores()


def alone() -> Workers:
    """The workers of a kernel called outside a network pass (a kernel's ``workers=None``): ``Workers()``,
    BLAS's cores (asked when needed), BLAS not held."""
    return _ALONE


_ALONE = Workers()


def or_alone(workers: Workers | None) -> Workers:
    """``workers``, or for None (a kernel called without them) :func:`alone`, BLAS warmed first
    (:meth:`Scheduler.warm_blas`: a network pass, which gives a kernel its workers, has done that)."""
    if workers is None:
        _SCHEDULER.warm_blas()
        return _ALONE
    return workers


def network_pass(images: int, split_image: bool = False):
    """:meth:`Scheduler.network_pass` of :func:`scheduler`: hold the cores for a network pass."""
    return _SCHEDULER.network_pass(images, split_image)


@contextmanager
def kernel_workers(workers: Workers | None, images: int, split_image: bool = False):
    """The workers of one kernel call: ``workers`` as given (within a network pass), or for a kernel called
    on its own (None) those of a :func:`network_pass` over its ``images`` alone, so that it splits its batch
    over the cores with BLAS on one thread as it does in a network. (Left to BLAS's own threads, a deep 3x3
    CONV's forward took 1.6x as long on the Intel Xeon: OpenBLAS's threads, left spinning after one call,
    took the cores the next call's parts needed; docs/performance-log.md.)"""
    if workers is not None:
        yield workers
        return
    with network_pass(images, split_image) as held:
        yield held


def split(work, count: int, workers: int, *, blas_held: bool = False) -> list:
    """The results of ``work(start, stop)`` for each of ``parts(count, workers)``, each part on its own thread.

    ``work`` is a generator function that yields once, after allocating its
    buffers, and returns its result: every part's allocations run first, in
    order on the calling thread, so a split's memory peak holds every part's
    buffers however the threads are timed (as ``volnet.analysis`` counts
    them); then the parts run side by side, the calling thread taking the
    first. While they run, NumPy's BLAS is limited to one thread (already so
    with ``blas_held``, in a network pass) and restored afterwards, also on
    errors. With one worker, or while another thread holds BLAS, in order here.
    """
    return _SCHEDULER.split(work, count, workers, blas_held=blas_held)


def split_compiled(calls_of, count: int, workers: int, *, blas_held: bool = False) -> None:
    """:func:`split` for parts that are calls of compiled kernels: ``calls_of(start, stop)`` allocates what its
    part needs and gives it as ``[(kernel, args), ...]``, made in order, asked for on this thread (the workers'
    first); a worker makes its part from compiled code, without the GIL, where it can (:mod:`volnet.ops.native`)."""
    _SCHEDULER.split_compiled(calls_of, count, workers, blas_held=blas_held)


def split_kernel(kernel, arguments: tuple, count: int, workers: int, *, blas_held: bool = False) -> None:
    """:func:`split_compiled` of one call a part, ``kernel(*arguments, start, stop)``."""
    split_compiled(lambda start, stop: [(kernel, (*arguments, start, stop))], count, workers, blas_held=blas_held)


def _threadpoolctl():
    """The threadpoolctl module, imported at the first split rather than with volnet, whose import it would slow
    (docs/performance-log.md); None where it is not installed: kernels then run their blocks one after another."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


def __getattr__(name):  # ``threads.threadpoolctl``: the module or None, as _threadpoolctl() finds it
    if name == "threadpoolctl":
        return _threadpoolctl()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _prepare(work, start: int, stop: int):
    part = work(start, stop)
    next(part)  # up to its yield: the part's buffers
    return part


def _make(calls) -> None:
    for kernel, args in calls:
        kernel(*args)


def _on(cpu: int | None, run, part):  # run(part) in a worker, held on cpu first
    _PLACEMENT.hold(cpu)
    return run(part)


def _finish(part):
    try:
        next(part)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a part of a split must yield exactly once, after allocating its buffers")
