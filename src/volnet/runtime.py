"""Process settings that make NumPy ConvNet code fast, turned on by the user: :func:`configure`.

Keeping freed memory for reuse. Every layer allocates its output (and
backward its gradient) afresh, tens of megabytes each at batch 256. glibc
hands allocations above its mmap threshold (at most 32 MiB by default)
straight back to the kernel when they are freed, so the next call's array
of the same size page-faults again, 4 KiB at a time (what that costs:
docs/performance-log.md).

``configure(keep_freed_memory=True)`` raises the threshold and turns off
trimming, so freed blocks stay in the process and are reused without
faults; the price is that the process's resident size stays at its peak
(as with PyTorch's GPU caching allocator). It changes nothing but glibc's
malloc, for the whole process, and nothing at all on other C libraries.
``import volnet`` changes nothing; the ``volnet`` command turns it on
(:func:`configure_from_environment`) unless the environment variable
``VOLNET_KEEP_FREED_MEMORY`` is ``0``.

Threads are not a process setting here: a network pass takes the cores
BLAS has (:mod:`volnet.ops.threads`; set them with threadpoolctl or
``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``).
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Allocations below this come from the heap and are reused; 1 GiB keeps every
# activation of the zoo's nets at batch 256 there (VGG-16's largest is 822 MB).
MMAP_THRESHOLD = 2**30
ENV_SWITCH = "VOLNET_KEEP_FREED_MEMORY"

_settings = {"keep_freed_memory": False}  # what configure() has turned on in this process


def configure(*, keep_freed_memory: bool | None = None) -> dict:
    """Turn on process-wide settings; returns those in effect, e.g. ``{"keep_freed_memory": True}``.

    Args:
        keep_freed_memory: keep freed memory in the process for reuse (glibc's
            ``mallopt``; see the module docstring): large temporaries stop
            page-faulting, and the resident size stays at its peak. True where
            glibc agreed; elsewhere (macOS, musl, Windows) it stays False.
            It cannot be turned off again in a running process (False once it
            is on raises ValueError). Default: None (unchanged).

    Example:
        >>> import volnet
        >>> sorted(volnet.configure())  # nothing asked: the settings, with whether each is on
        ['keep_freed_memory']
    """
    if keep_freed_memory is not None:
        if keep_freed_memory:
            _settings["keep_freed_memory"] = _settings["keep_freed_memory"] or _keep_freed_memory()
        elif _settings["keep_freed_memory"]:
            raise ValueError("keep_freed_memory is on in this process and cannot be turned off again "
                             "(glibc's earlier thresholds are not restored); start a new process without it")
    return dict(_settings)


def keep_freed_memory() -> bool:
    """``configure(keep_freed_memory=True)``: True if glibc agreed, False elsewhere (macOS, musl, Windows)."""
    return configure(keep_freed_memory=True)["keep_freed_memory"]


def _keep_freed_memory() -> bool:
    try:  # the process's own symbols, libc's among them (ctypes.util.find_library would run ldconfig: ~25 ms)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def configure_from_environment() -> bool:
    """What the ``volnet`` command runs: ``configure(keep_freed_memory=True)`` unless
    ``VOLNET_KEEP_FREED_MEMORY=0``; True if it is on."""
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return _settings["keep_freed_memory"]
    return keep_freed_memory()
