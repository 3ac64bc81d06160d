"""Helpers shared by the benchmark scripts: timing, thread matching, what the numbers ran on, and their record.

The scripts run as files (``python benchmarks/bench_train.py``), so Python puts
this folder on ``sys.path`` and they import it as ``_common``. Each script
writes its table to ``benchmarks/results/<machine kind>/<script>.json`` (:class:`Results`, :func:`machine_kind`),
which ``benchmarks/report.py`` turns into the "Speed and memory" section of docs/performance.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import threadpoolctl

import volnet

# The speeds are measured as the volnet command runs: freed memory kept for reuse (volnet.runtime), unless
# VOLNET_KEEP_FREED_MEMORY=0 asks to measure without it.
volnet.configure(keep_freed_memory=os.environ.get("VOLNET_KEEP_FREED_MEMORY", "1").strip() != "0")

SLOW_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
RESULTS = Path(__file__).resolve().parent / "results"


def compare_interleaved(fns: dict, rounds: int, calls: int) -> dict:
    """``{name: [seconds of every timed call]}`` of several functions, timed in blocks that take turns.

    Each round runs every function in turn: one untimed warm-up call, then
    ``calls`` timed calls. Blocks, not single alternating calls: after a
    call, torch's OpenMP threads and OpenBLAS's threads spin-wait for more
    work and take the CPU from whatever runs next (on 2 cores that slowed
    the second library 2-5x); the warm-up call absorbs it. Rounds spread
    every function over the whole run, so that load changing on a shared
    machine slows all of them alike.
    """
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def timing_row(times: dict, images: int | None = None) -> dict:
    """Median and min milliseconds of volnet's and torch's timed calls (from :func:`compare_interleaved`),
    the ratio volnet time / torch time, and with ``images`` per call, images/s (over the median).

    torch's entries are None when it did not run.
    """
    row = {}
    for name in ("volnet", "torch"):
        seconds = times.get(name)
        row[f"{name}_ms"] = 1e3 * statistics.median(seconds) if seconds else None
        row[f"{name}_min_ms"] = 1e3 * min(seconds) if seconds else None
        if images is not None:
            row[f"{name}_images_per_s"] = images / statistics.median(seconds) if seconds else None
    row["ratio"] = row["volnet_ms"] / row["torch_ms"] if row["torch_ms"] else None
    return row


def cell(value, spec: str) -> str:
    """``value`` formatted with ``spec`` for a table; "-" for None (torch not installed)."""
    return "-" if value is None else format(value, spec)


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


def start(torch) -> tuple[dict, int]:
    """A comparison's opening: match torch's threads to NumPy's BLAS (:func:`match_threads`), print the
    environment and the load; returns ``(blas_info(), threads)``."""
    blas, threads = match_threads(torch)
    print_environment(blas, threads, torch)
    print_load()
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


def cpu_model() -> str:
    """The "model name" line of /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_kind() -> str:
    """The folder of this machine kind's results: the CPU model and the BLAS kernel NumPy runs, as a slug.

    Those two decide which of volnet's paths are fast, and sessions get different kinds (``amd-epyc-haswell``,
    ``intel-xeon-...-skylakex``): each kind keeps its own results, and report.py shows them side by side.
    """
    model = re.sub(r"\((r|tm)\)|\bcpu\b|@.*", " ", cpu_model().lower())
    return re.sub(r"[^a-z0-9]+", "-", f"{model} {blas_info().get('architecture') or 'blas'}".lower()).strip("-")


def total_memory() -> int | None:
    """Bytes of physical memory, None where the OS does not say (no ``sysconf``)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def significant(value, digits: int = 4):
    """``value`` with every float in it rounded to ``digits`` significant digits (timings are not more exact)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {key: significant(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [significant(item, digits) for item in value]
    return value


def installed_version(package: str) -> str | None:
    """The installed version of ``package``, None if it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class Results:
    """One run's record, written by :meth:`write` to ``benchmarks/results/<machine kind>/<name>.json``
    (overwritten by the next run on the same kind of machine).

    Made when the run starts, to note the time (UTC) and the load average;
    the file also holds the machine, the versions, NumPy's BLAS, whether the
    OpenBLAS variables that slow it were set, the load average at the end,
    the method and the rows. Sorted keys, an indent of 2 and floats to 4
    significant digits keep diffs small.
    """

    def __init__(self, name: str):
        self.name = name
        self.started = datetime.now(timezone.utc)
        self.load_start = os.getloadavg()

    def write(self, method: dict, rows: list, **extra) -> Path:
        blas = blas_info()
        record = {
            "script": f"benchmarks/{self.name}.py",
            "timestamp": self.started.isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_bytes": total_memory(),
                        "platform": platform.platform()},
            "versions": {"python": platform.python_version(), "numpy": np.__version__, "volnet": volnet.__version__,
                         "torch": installed_version("torch")},
            "blas": {key: blas.get(key) for key in ("internal_api", "version", "architecture", "num_threads")},
            "openblas_variables_set": {name: bool(os.environ.get(name)) for name in SLOW_BLAS_VARIABLES},
            "load_average": {"start": list(self.load_start), "end": list(os.getloadavg())},
            "method": method,
            "rows": rows,
            **extra,
        }
        folder = RESULTS / machine_kind()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(significant(record), indent=2, sort_keys=True) + "\n")
        print(f"\nwrote {os.path.relpath(path)}")
        return path
