"""The memory this process may use, and a guard that refuses work that would not fit.

A request that cannot fit (a 100000x100000 resize, a sliding window over a
100x enlarged image, a layer with 10^14 weights) should be refused before
NumPy tries to allocate it: the kernel's OOM killer gives no message, and a
NumPy ``MemoryError`` names no flag to change. Callers estimate what they
need (:mod:`volnet.analysis` for networks, plain arithmetic for data) and
call :func:`require_memory` first.

What counts as available is the smallest of: the kernel's ``MemAvailable``
(free memory plus reclaimable caches), the cgroup's limit less its current
use (containers, SLURM jobs), and the address-space limit (``ulimit -v``).

Estimates count live arrays only. The allocator keeps freed blocks of up
to 32 MiB for reuse (glibc's malloc) and threads reserve stacks and
arenas, so a process reaches more than its live arrays: sliding over
2744x2744 images, estimated at 5.55 GiB, reached 6.0 GiB of address
space. :func:`usable_memory` therefore leaves :data:`HEADROOM_FRACTION` of
the work (and :data:`HEADROOM_BYTES` at least) to them, and the guards
compare estimates with that.
"""

from __future__ import annotations

import math
import os
import resource
import sys
from pathlib import Path


HEADROOM_FRACTION = 0.15  # on top of an estimate: the allocator's retained blocks, thread stacks and arenas
HEADROOM_BYTES = 64 * 2**20  # the least headroom kept


class ResourceError(ValueError):
    """Work that needs more memory than the machine has; the message names the flag to change."""


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:  # cgroup v1 writes "no limit" as a huge number
            return None
        return max(int(limit) - usage, 0)
    return None


def _address_space_available() -> int | None:
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ValueError, OSError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        used = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        used = 0
    return max(soft - used, 0)


def resident_memory() -> int | None:
    """Bytes of this process in memory now (its resident set), or None where the platform does not say."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:  # the peak, not the present size: an overestimate, where the kernel gives nothing better
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ValueError, OSError, AttributeError):
        return None
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the platform has one, else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes this process can still allocate, or None where the platform does not say."""
    figures = [n for n in (_meminfo_available(), _cgroup_available(), _address_space_available()) if n is not None]
    return min(figures) if figures else None


def format_bytes(n: int) -> str:
    """``'58.1 MiB (60.9 MB)'``: binary units first, as the notes divide by 1024, decimal ones beside them."""
    def scaled(base, names):
        value, unit = float(n), names[0]
        for name in names[1:]:
            if abs(value) < base:
                break
            value, unit = value / base, name
        return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
    return f"{scaled(1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB'])} ({scaled(1000, ['B', 'kB', 'MB', 'GB', 'TB'])})"


def describe_bytes(n) -> str:
    """``'58.1 MiB (60.9 MB)'`` as :func:`format_bytes` writes it, for any size at all.

    A count too large for a float (sliding over a 10**200-times enlarged
    image) is written as a power of ten instead of raising OverflowError.
    """
    if isinstance(n, float) and not math.isfinite(n):
        return "an unbounded number of bytes"
    try:
        return format_bytes(int(n))
    except OverflowError:
        return f"about 10^{len(str(int(n))) - 1} bytes"


def usable_memory(available: int | None = None) -> int | None:
    """Bytes of live arrays that fit in ``available`` (default: :func:`available_memory`) with headroom.

    ``needed <= usable_memory()`` is the guards' test: the work's estimate
    plus :data:`HEADROOM_FRACTION` of it (at least :data:`HEADROOM_BYTES`)
    fits in what is available.

    >>> usable_memory(1150 * 2**20) // 2**20   # 1150 MiB available: 1000 MiB for arrays, 150 for headroom
    1000
    """
    available = available_memory() if available is None else available
    if available is None:
        return None
    return max(0, min(available - HEADROOM_BYTES, int(available / (1 + HEADROOM_FRACTION))))


def machine_has(available: int) -> str:
    return (f"the machine has {describe_bytes(available)} available, "
            f"{describe_bytes(usable_memory(available))} of it for arrays")


def require_memory(needed: float, what: str, fix: str) -> None:
    """Raise :class:`ResourceError` when ``needed`` bytes exceed what the machine has available.

    ``what`` says which work needs it ("sliding the net over 2800x2800 images"),
    ``fix`` which flag or argument to change ("lower --scale"). ``needed``
    is compared with :func:`usable_memory`; nothing is checked where the
    platform does not say what is available.

    Example:
        >>> require_memory(1e30, "a test", "ask for less")
        Traceback (most recent call last):
        ...
        volnet.resources.ResourceError: a test needs ... TiB (... TB), the machine has ...; ask for less
    """
    available = available_memory()
    if available is None or needed <= usable_memory(available):
        return
    raise ResourceError(f"{what} needs {describe_bytes(needed)}, {machine_has(available)}; {fix}")
