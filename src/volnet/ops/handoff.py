"""The worker threads of a split, which wait for their next part by spinning for a while, without the GIL.

A thread that blocks (a lock, a queue) leaves its CPU idle, and on the
virtual machines this project is measured on an idle virtual CPU halts at
once (the kernel's ``haltpoll.guest_halt_poll_ns=0``): waking it again took
about 30 us, and a split of the standard library's thread pool woke two
threads (the worker at its start, the caller at its end), so that a split
with empty parts took 90-170 us (docs/threads.md), and a LeNet training
step splits 8 times. Here each side watches a flag instead, in a compiled
loop that has released the GIL, as OpenMP's threads wait: a worker for its
next part, for up to :data:`WORKER_SPIN_SECONDS` after its last, then it
blocks; the caller for the workers' parts to end, for up to
:data:`CALLER_SPIN_SECONDS`, then it polls with short sleeps.

The flags are int64 counters in one array, each on a cache line of its
own, read and written with atomic loads and stores (LLVM's; Numba has no
atomics of its own); the waits end by the CPU's time-stamp counter. A
worker reports its part finished from inside the compiled call that then
waits for its next, so the caller that sees the flag finds the GIL free.
A part made of calls of compiled kernels (:meth:`SpinningPool.run_calls`)
the worker makes in that same compiled call, without the GIL at all
(:mod:`volnet.ops.native`).
Without Numba, or on CPUs other than x86-64 (where user code may not read
the counter), :class:`BlockingPool` gives the same interface over the
standard library's pool (:func:`pool`).
"""

from __future__ import annotations

import platform
import threading
import time

import numpy as np

from . import native

# A worker's wait for its next part before it blocks: longer than the code between two splits of a training
# step (the loss, the update, the layers' Python), short enough that an idle process stops using the CPU at
# once. Against 200 us, 1 ms took 0.98x the time of LeNet's and cifar-ref's steps on the Intel Xeon, 2 ms
# no less again.
WORKER_SPIN_SECONDS = 1e-3
# The caller's wait for a worker's part before it polls: a part that runs this much longer than the caller's
# is unbalanced anyway. The caller's CPU has nothing else to do, and the worker runs on another CPU
# (volnet.ops.placement).
CALLER_SPIN_SECONDS = 1e-3
POLL_SECONDS = 50e-6  # the caller's sleep between looks at a part that runs longer still
_LINE = 8  # int64 counters a cache line holds: each flag gets a line of its own
_POSTED, _DONE = 0, 1  # a worker's two flags: the last part given to it, and the last it finished
# A worker's row of compiled calls (SpinningPool.run_calls): the ticket they were posted with, their count, a
# (trampoline, first slot) pair per call, then the calls' arguments (volnet.ops.native.pack).
_TICKET, _COUNT, _FIRST_CALL = 0, 1, 2
MAX_CALLS = 8  # (a strided input gradient's part: its padding, then a kernel call per stride phase)
CALL_SLOTS = 512  # int64 slots of a row (4 KB): a kernel's arguments take up to about 60 (arrays 5 + 2 x ndim)

_spin = None  # the compiled functions (spin_functions), made at the first pool
_TICKS_PER_SECOND = None  # ticks_per_second, timed at the first pool


def spins() -> bool:
    """Whether :func:`pool` gives spinning workers: Numba on, and an x86-64 CPU."""
    from .jit import ENABLED

    return ENABLED and platform.machine().lower() in ("x86_64", "amd64")


def pool(count: int) -> SpinningPool | BlockingPool:
    """A pool of ``count`` workers: spinning where :func:`spins`, else blocking."""
    return (SpinningPool if spins() else BlockingPool)(count)


def spin_functions():
    """``(wait_for, finish_and_wait, ticks_now)``, compiled (once, cached on disk) with atomic loads and stores.

    ``wait_for(flags, index, old, ticks)``: the value of ``flags[index]`` once it differs from ``old``, or
    ``old`` once ``ticks`` of the time-stamp counter (:func:`ticks_per_second`) have passed.
    ``finish_and_wait(flags, done, value, index, old, ticks, calls)``: store ``value`` in ``flags[done]``, then
    ``wait_for``: a worker reports its part finished from inside the compiled call, without the GIL, so the
    caller that sees the flag finds the GIL free. Where the new value is the ticket of the compiled calls
    written in ``calls`` (:meth:`SpinningPool.run_calls`), it makes them, reports them finished and waits
    again; it returns with a part it cannot make, or, once it has waited ``ticks``, the last ticket it
    finished. ``ticks_now()``: the counter.
    """
    global _spin, _load, _store, _cycles, _wait, _call
    if _spin is not None:
        return _spin
    import numba

    _load, _store, _cycles = _intrinsics()
    _, _call, _ = native.functions()
    compile_ = numba.njit(nogil=True, cache=True)
    _wait = compile_(_wait_for)
    _spin = _wait, compile_(_finish_and_wait), compile_(_ticks_now)
    return _spin


# What the compiled functions below call, set by spin_functions (Numba is imported only then). They read them as
# module globals: Numba keys its disk cache of a function by the values its closure holds, and as a closure over
# these objects each process missed the cache and compiled them again (0.56 s; the cache grew by three files).
_load = _store = _cycles = _wait = _call = None


def _intrinsics():
    """``(load, store, cycles)``: an atomic load ``load(array, index)`` and store ``store(array, index,
    value)`` of an int64 array's element, and ``cycles()``, the CPU's time-stamp counter
    (llvm.readcyclecounter; 0 where there is none)."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def load(typingctx, array, index):
        def codegen(context, builder, signature, args):
            view = context.make_array(signature.args[0])(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, signature.args[0], view, [args[1]])
            return builder.load_atomic(pointer, "seq_cst", 8)

        return types.int64(array, index), codegen

    @intrinsic
    def store(typingctx, array, index, value):
        def codegen(context, builder, signature, args):
            view = context.make_array(signature.args[0])(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, signature.args[0], view, [args[1]])
            builder.store_atomic(args[2], pointer, "seq_cst", 8)
            return context.get_dummy_value()

        return types.void(array, index, value), codegen

    @intrinsic
    def cycles(typingctx):
        def codegen(context, builder, signature, args):
            function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                                      "llvm.readcyclecounter")
            return builder.call(function, [])

        return types.int64(), codegen

    return load, store, cycles


def _ticks_now():  # pragma: no cover - compiled
    return _cycles()


def _wait_for(flags, index, old, ticks):  # pragma: no cover - compiled
    deadline = _cycles() + ticks
    while True:
        for _ in range(64):
            value = _load(flags, index)
            if value != old:
                return value
        if _cycles() >= deadline:
            return old


def _finish_and_wait(flags, done, value, index, old, ticks, calls):  # pragma: no cover - compiled
    while True:
        _store(flags, done, value)
        seen = _wait(flags, index, old, ticks)
        if seen == old or _load(calls, _TICKET) != seen:
            return seen
        for c in range(calls[_COUNT]):  # a part of compiled calls: made here, without the GIL
            _call(calls[_FIRST_CALL + 2 * c], calls, calls[_FIRST_CALL + 2 * c + 1])
        value = old = seen


def ticks_per_second() -> float:
    """The rate of the CPU's time-stamp counter, which the spinning loops read for their deadlines, timed once
    against ``time.perf_counter`` over 2 ms; 0 where the counter does not advance (no such counter)."""
    global _TICKS_PER_SECOND
    if _TICKS_PER_SECOND is None:
        *_, ticks_now = spin_functions()
        ticks_now()  # compiled (or loaded) before timing
        start, ticks = time.perf_counter(), ticks_now()
        while time.perf_counter() - start < 2e-3:
            pass
        elapsed, counted = time.perf_counter() - start, ticks_now() - ticks
        _TICKS_PER_SECOND = counted / elapsed if counted > 0 else 0.0
    return _TICKS_PER_SECOND


class SpinningPool:
    """``count`` daemon worker threads, each given one part at a time (:meth:`run`; :meth:`results` waits)."""

    def __init__(self, count: int):
        self.count, self.closed = count, False
        self._flags = np.zeros(2 * count * _LINE, dtype=np.int64)
        self._posted = [0] * count  # the last ticket given to each worker (what the caller waits for)
        self._tasks: list = [None] * count
        self._results: list = [None] * count
        self._wake = [threading.Event() for _ in range(count)]
        self._sleeping = [False] * count
        self._calls = np.zeros((count, CALL_SLOTS), dtype=np.int64)  # each worker's compiled calls (run_calls)
        self._cpus: list = [None] * count  # the CPU each worker was last asked to hold (run_calls)
        rate = ticks_per_second()  # without a counter, no spinning: the worker blocks, the caller polls
        self._worker_ticks, self._caller_ticks = int(WORKER_SPIN_SECONDS * rate), int(CALLER_SPIN_SECONDS * rate)
        self._threads = [threading.Thread(target=self._serve, args=(i,), name=f"volnet-{i}", daemon=True)
                         for i in range(count)]
        for thread in self._threads:
            thread.start()

    def run(self, worker: int, task) -> None:
        """Give ``task`` (a function of no arguments) to ``worker``; it starts at once if it was spinning."""
        self._tasks[worker] = task
        self._posted[worker] += 1
        self._flags[self._index(worker, _POSTED)] = self._posted[worker]
        if self._sleeping[worker]:  # (both read and written under the GIL, so no wake is lost)
            self._wake[worker].set()

    def run_calls(self, worker: int, calls, cpu: int | None = None) -> bool:
        """Give ``worker`` a part made of calls of compiled kernels, ``calls`` a list of ``(kernel, args)``
        (the arguments kept alive by the caller until :meth:`results`), which it makes without the GIL. False,
        and nothing given, where it cannot: a kernel not compiled for its arguments
        (:func:`volnet.ops.native.prepared`), calls that do not fit the worker's row, or a worker not yet on
        ``cpu`` (moving it takes Python: the caller gives the part as a function that does; it is then taken
        to be there)."""
        pack, _, _ = native.functions()
        prepared = [native.prepared(kernel, args) for kernel, args in calls]
        row, offset = self._calls[worker], _FIRST_CALL + 2 * MAX_CALLS
        fits = (None not in prepared and len(calls) <= MAX_CALLS
                and offset + sum(call.slots for call in prepared) <= CALL_SLOTS)
        for index, (call, (_, args)) in enumerate(zip(prepared, calls) if fits else ()):
            row[_FIRST_CALL + 2 * index] = call.trampoline  # (written also for a worker that moves first, which
            row[_FIRST_CALL + 2 * index + 1] = offset  # reads its row only at the ticket below: the first part
            offset = pack(row, offset, args)  # compiles what the next need, outside the measured calls)
        moved, self._cpus[worker] = self._cpus[worker] != cpu, cpu
        if not fits or moved:
            return False
        row[_COUNT] = len(calls)
        row[_TICKET] = self._posted[worker] + 1  # (the worker reads the row once it sees this ticket posted)
        self.run(worker, None)
        return True

    def results(self, count: int) -> list:
        """Wait for the parts of workers ``0..count-1`` to end (spinning, then polling): their return values,
        or, once all have ended, the first one's exception raised."""
        wait_for, *_ = spin_functions()
        for worker in range(count):
            done, ticket = self._index(worker, _DONE), self._posted[worker]
            if wait_for(self._flags, done, ticket - 1, self._caller_ticks) != ticket:
                while self._flags[done] != ticket:
                    time.sleep(POLL_SECONDS)
        outcomes = [self._results[worker] for worker in range(count)]
        self._results[:count] = [None] * count
        return _raise_first(outcomes)

    def close(self, wait: bool = False) -> None:
        """Stop the workers (each ends after its current part; a caller waits for its parts first), and
        with ``wait`` join them."""
        self.closed = True
        for worker in range(self.count):
            self.run(worker, None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _index(self, worker: int, flag: int) -> int:
        return (2 * worker + flag) * _LINE

    def _serve(self, worker: int) -> None:
        _, finish_and_wait, _ = spin_functions()
        posted, done, calls = self._index(worker, _POSTED), self._index(worker, _DONE), self._calls[worker]
        ticket = 0
        while True:
            seen = finish_and_wait(self._flags, done, ticket, posted, ticket, self._worker_ticks, calls)
            if seen == self._flags[done]:  # nothing new for a while (compiled calls made): block until woken
                ticket = seen
                self._sleeping[worker] = True
                while self._flags[posted] == ticket:
                    self._wake[worker].wait()
                    self._wake[worker].clear()
                self._sleeping[worker] = False
                if calls[_TICKET] == self._flags[posted]:  # compiled calls: finish_and_wait makes them
                    continue
                seen = int(self._flags[posted])
            ticket, task = seen, self._tasks[worker]
            self._tasks[worker] = None
            if task is None:
                self._flags[done] = ticket
                return
            self._results[worker] = _failure_kept(task)  # an exception is handed to the caller, which raises it


class BlockingPool:
    """:class:`SpinningPool`'s interface over the standard library's thread pool (without Numba, or off
    x86-64)."""

    def __init__(self, count: int):
        from concurrent.futures import ThreadPoolExecutor

        self.count, self.closed = count, False
        self._executor = ThreadPoolExecutor(count, thread_name_prefix="volnet")
        self._futures: list = [None] * count

    def run(self, worker: int, task) -> None:
        self._futures[worker] = self._executor.submit(_failure_kept, task)

    def run_calls(self, worker: int, calls, cpu: int | None = None) -> bool:
        """Compiled calls run as Python functions here: always False."""
        return False

    def results(self, count: int) -> list:
        outcomes = [self._futures[worker].result() for worker in range(count)]
        self._futures[:count] = [None] * count
        return _raise_first(outcomes)

    def close(self, wait: bool = False) -> None:
        self.closed = True
        self._executor.shutdown(wait=wait)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _failure_kept(task):
    try:
        return task()
    except BaseException as error:
        return _Failure(error)


def _raise_first(outcomes: list) -> list:
    for outcome in outcomes:
        if isinstance(outcome, _Failure):
            raise outcome.error
    return outcomes
