"""Which CPU each part of a split runs on: the calling thread where it is, every other part on a CPU of its own.

Left to the operating system, the parts of a split do not always run side
by side. On the 2-core virtual machines this project is measured on (Linux
with the ``sched_vcpu_pack`` option, which keeps idle virtual CPUs halted),
a worker thread woken after its CPU had idled a few milliseconds was put on
the CPU of the thread that woke it: the worker's part ran first and the
caller's after it. Every split of a LeNet training step after a 20 ms pause
took twice its time (the step 9.3 -> 16 ms), as a program that pauses
between batches (loading data, a server between requests) would (the
figures: docs/threads.md). For the length of a split :func:`Placement.pinned`
therefore holds the calling thread on the CPU it is on, and each worker
holds itself on another CPU of the caller's (:meth:`Placement.hold`).
The caller's own CPU mask comes back after the split, also on errors;
workers, which serve only splits, stay where they were last put.

Where the system has no CPU affinity (macOS, Windows) or the caller may run
on one CPU only, nothing is pinned and the parts run where the system puts
them.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager


def _sched_getcpu():
    """libc's ``sched_getcpu`` (about 0.1 us a call), or None where there is none (not Linux, no glibc)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    getcpu.restype, getcpu.argtypes = ctypes.c_int, []
    return getcpu


class Placement:
    """Pins the parts of a split to distinct CPUs: :meth:`pinned` for the caller, :meth:`hold` in each worker."""

    def __init__(self):
        self._getcpu = _sched_getcpu()
        self._held = threading.local()  # the CPU this worker thread was last held on

    @contextmanager
    def pinned(self, parts: int):
        """Hold the calling thread on the CPU it is on while the block runs; gives the CPUs for the other
        ``parts - 1`` parts (distinct CPUs of the caller's mask, its own excluded, repeating only where the
        mask has fewer CPUs than parts), or a list of None where nothing can be pinned."""
        mask = self._mask()
        here = self._getcpu() if mask and len(mask) > 1 else -1
        if here < 0 or here not in mask:
            yield [None] * (parts - 1)
            return
        others = sorted(mask - {here})
        os.sched_setaffinity(0, {here})
        try:
            yield [others[i % len(others)] for i in range(parts - 1)]
        finally:
            os.sched_setaffinity(0, mask)

    def hold(self, cpu: int | None) -> None:
        """Hold the calling (worker) thread on ``cpu`` (None: leave it where it is); a system call only when
        the CPU differs from this thread's last."""
        if cpu is None or getattr(self._held, "cpu", None) == cpu:
            return
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:  # the CPU went offline or out of the process's set: run where the system puts us
            return
        self._held.cpu = cpu

    def _mask(self) -> set[int] | None:
        if self._getcpu is None:
            return None
        try:
            return os.sched_getaffinity(0)
        except OSError:
            return None
