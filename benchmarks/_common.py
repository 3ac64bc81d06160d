"""Helpers shared by the benchmark scripts: timing, thread matching, and what the numbers ran on.

The scripts run as files (``python benchmarks/bench_train.py``), so Python puts
this folder on ``sys.path`` and they import it as ``_common``.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import threadpoolctl

SLOW_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def median_ms(fn, repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def median_ms_interleaved(fns: dict, repeat: int, warmup: int = 2) -> dict:
    """``{name: median ms}`` of several functions, timed in turn (one call of each per round).

    Alternating keeps a machine whose load changes during the run from
    favouring whichever function happened to run in the quiet part.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(seconds) for name, seconds in times.items()}


def print_load() -> None:
    """The load average against the core count: other work on the machine skews every timing."""
    one, five, _ = os.getloadavg()
    print(f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores")


def blas_info() -> dict:
    """NumPy's BLAS as threadpoolctl sees it (the first 'blas' pool that is not torch's)."""
    pools = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    numpy_pools = [p for p in pools if "numpy" in p.get("filepath", "")] or pools
    return numpy_pools[0] if numpy_pools else {}


def match_threads(torch) -> tuple[dict, int]:
    """Set torch's thread count to NumPy's BLAS thread count; returns ``(blas_info(), threads)``.

    ``torch`` may be None (not installed): the count is then only reported.
    """
    blas = blas_info()
    threads = int(blas.get("num_threads") or os.cpu_count() or 1)
    if torch:
        torch.set_num_threads(threads)
    return blas, threads


def print_environment(blas: dict, threads: int, torch, *, uses_torch: bool = True) -> None:
    """Versions, NumPy's BLAS kernel, the OpenBLAS variables that slow it down (reported, not changed), threads.

    ``uses_torch=False`` for a benchmark of volnet alone.
    """
    if not uses_torch:
        print(f"numpy {np.__version__}")
    else:
        print(f"numpy {np.__version__}; torch {torch.__version__ if torch else 'not installed'}")
    arch = blas.get("architecture") or blas.get("corename") or "?"
    print(f"NumPy BLAS: {blas.get('internal_api', '?')} {blas.get('version', '?')}, "
          f"architecture/corename {arch}, {blas.get('num_threads', '?')} threads")
    for name in SLOW_BLAS_VARIABLES:
        value = os.environ.get(name)
        print(f"{name}: {'set to ' + repr(value) + ' (slows NumPy BLAS here)' if value else 'not set'}")
    if not uses_torch:
        print(f"threads: {threads}")
    elif torch:
        print(f"threads: {threads} (torch.set_num_threads set to NumPy's BLAS thread count)")
    else:
        print(f"threads: {threads}; torch is not installed, so volnet numbers alone are shown")


def to_nchw(x: np.ndarray, torch):
    """A volnet batch ``(N, H, W, D)`` as a contiguous torch tensor ``(N, C, H, W)`` of the same values."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
