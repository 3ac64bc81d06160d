"""Process settings that make NumPy ConvNet code fast: keeping freed memory for reuse.

Every layer allocates its output (and backward its gradient) afresh, tens of
megabytes each at batch 256. glibc hands allocations above its mmap
threshold (at most 32 MiB by default) straight back to the kernel when they
are freed, so the next call's array of the same size page-faults again,
4 KiB at a time. On the 2-core development VM a fresh 33 MB array cost
about 3 us per fault, 528 faults even with transparent huge pages: a ReLU
over a (256, 32, 32, 32) batch took 8.3 ms into a fresh array and 4.9 ms
into a reused one.

:func:`keep_freed_memory` raises the threshold and turns off trimming, so
freed blocks stay in the process and are reused without faults; the price
is that the process's resident size stays at its peak (as with PyTorch's
GPU caching allocator). ``import volnet`` calls it unless the environment
variable ``VOLNET_KEEP_FREED_MEMORY`` is ``0``. It changes nothing but
glibc's malloc, and nothing at all on other C libraries.
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


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; True if it agreed, False elsewhere (macOS, musl, Windows)."""
    try:  # the process's own symbols, libc's among them (ctypes.util.find_library would run ldconfig: ~25 ms)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def configure_from_environment() -> bool:
    """What ``import volnet`` runs: :func:`keep_freed_memory` unless ``VOLNET_KEEP_FREED_MEMORY=0``."""
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return False
    return keep_freed_memory()
