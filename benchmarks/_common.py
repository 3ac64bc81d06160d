"""Helpers shared by the benchmark scripts: timing, thread matching, what the numbers ran on, and their record.

The scripts run as files (``python benchmarks/bench_train.py``), so Python puts
this folder on ``sys.path`` and they import it as ``_common``. Each script
writes its table to ``benchmarks/results/<machine kind>/<script>.json`` (:class:`Results`, :func:`machine_kind`;
the environment variable ``VOLNET_BENCH_RESULTS`` names another folder instead of ``benchmarks/results``),
which ``benchmarks/report.py`` turns into the "Speed and memory" section of docs/performance.md.

The comparisons with PyTorch time every case two ways:

* in turn, in one process (:func:`compare_within_budget`): both libraries
  take turns in rounds, so that load changing on a shared machine slows
  both alike; rounds and calls are cut for a heavy case so that it takes
  about ``--budget`` seconds;
* in fresh processes (:func:`compare_fresh`): each library in its own new
  interpreter, as a user runs it. The script runs itself with ``--child
  LIBRARY``, and the child imports only what that library needs and sets
  only that library's process settings (:func:`child_settings`: volnet's kept
  freed memory, as the ``volnet`` command sets it, or torch's threads), so
  PyTorch's allocator runs without volnet's ``mallopt``. The child times
  :data:`FRESH_WARMUP_CALLS` warm-up calls and as many timed calls as the other way took, and
  prints them with its view of the process as one line of JSON
  (:func:`report_alone`, read back by :func:`time_in_fresh_process`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import threadpoolctl

import volnet

SLOW_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
BENCHMARKS = Path(__file__).resolve().parent
RESULTS_VARIABLE = "VOLNET_BENCH_RESULTS"
LIBRARIES = ("volnet", "torch")  # the two that the fresh-process comparison runs alone
BUDGET_SECONDS = 15.0  # default time to spend on one case, each way
MIN_ROUNDS = 3
# OpenBLAS's idle threads spin for about 0.1 s after a multiply (docs/threads.md), on the cores the
# next library wants: compare_interleaved pauses this long before each library's block.
SETTLE_SECONDS = 0.2
# After the pause, each library's block warms up with calls for at least this long before its timed calls: on a
# 2-core KVM machine (the Intel Xeon kind) a second core idle for the pause woke slowly, and volnet's calls split
# over both cores ran at one core's speed for about 45 ms (some 20 calls of LeNet's second CONV: 2.4 ms against
# 1.4 ms once awake), where torch's OpenMP threads, spinning, kept theirs awake. A training loop runs in the
# awake state; one warm-up call measured the waking.
WARMUP_SECONDS = 0.1
# A fresh process's first calls pay once for what later calls reuse (Numba's compilation, first page
# faults, BLAS's buffers): volnet's resnet18-cifar forward at batch 1 took 2.9 s, 0.26 s, then 0.07 s.
FRESH_WARMUP_CALLS = 3
BLAS_KEYS = ("internal_api", "version", "architecture", "num_threads")  # what a record keeps of blas_info()


def configure_volnet() -> None:
    """Turn on the process settings that the ``volnet`` command turns on, as it does
    (:func:`volnet.runtime.configure_from_environment`: freed memory kept for reuse, unless
    ``VOLNET_KEEP_FREED_MEMORY=0``, and so on): the speeds are measured as volnet runs for a user.

    Every benchmark calls it before timing volnet, except a fresh process that runs torch alone.
    """
    volnet.runtime.configure_from_environment()


def results_folder() -> Path:
    """Where results are written and read: ``$VOLNET_BENCH_RESULTS``, else ``benchmarks/results``."""
    return Path(os.environ.get(RESULTS_VARIABLE) or BENCHMARKS / "results")


def optional_torch():
    """The torch module, or None where it is not installed (the tables then show volnet alone)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def compare_interleaved(fns: dict, rounds: int, calls: int) -> dict:
    """``{name: [seconds of every timed call]}`` of several functions, timed in blocks that take turns.

    Each round runs every function in turn: a pause of :data:`SETTLE_SECONDS`,
    untimed warm-up calls for at least :data:`WARMUP_SECONDS` (one at least),
    then ``calls`` timed calls. Blocks, not single
    alternating calls: after a call, torch's OpenMP threads and OpenBLAS's
    threads spin-wait for more work and take the CPU from whatever runs next
    (on 2 cores that slowed the second library 2-5x). The warm-up call
    absorbed it for calls of tens of milliseconds, but not for LeNet at batch
    1 (about 1 ms a call): there volnet took 5.9x torch's time taking turns
    against 1.07x in fresh processes; the pause lets the other library's
    threads fall asleep first. Rounds spread every function over the whole
    run, so that load changing on a shared machine slows all of them alike.
    """
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(SETTLE_SECONDS)
            warm = time.perf_counter() + WARMUP_SECONDS
            fn()
            while time.perf_counter() < warm:
                fn()
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def fit_plan(call_seconds: float, budget: float, rounds: int, calls: int) -> tuple[int, int]:
    """``(rounds, calls)``: the ones asked for, or fewer, so that a comparison takes about ``budget`` seconds.

    ``call_seconds`` is one call of every library together; a round costs
    ``(calls + 1) * call_seconds`` (its warm-up included). Calls per round
    are cut first, then rounds, never below :data:`MIN_ROUNDS` rounds of 1
    call: a case heavier than that takes longer than the budget.
    """
    call_seconds = max(call_seconds, 1e-9)  # a clock that ticked less than once
    calls = min(calls, max(1, int(budget / (rounds * call_seconds)) - 1))
    rounds = min(rounds, max(MIN_ROUNDS, int(budget / ((calls + 1) * call_seconds))))
    return rounds, calls


def compare_within_budget(fns: dict, budget: float, rounds: int, calls: int) -> tuple[dict, int, int]:
    """:func:`compare_interleaved` with at most ``rounds`` x ``calls``, cut by :func:`fit_plan` to take about
    ``budget`` seconds; returns ``(times, rounds, calls)``, the rounds and calls it ran.

    A probe round of one call each (after its warm-up) measures the cost of
    a call; where the plan is 1 call per round, that round is one of them.
    """
    probe = compare_interleaved(fns, rounds=1, calls=1)
    rounds, calls = fit_plan(sum(seconds[0] for seconds in probe.values()), budget, rounds, calls)
    if calls == 1:
        rest = compare_interleaved(fns, rounds - 1, calls)
        return {name: probe[name] + rest[name] for name in fns}, rounds, calls
    return compare_interleaved(fns, rounds, calls), rounds, calls


def timing_row(times: dict, images: int | None = None, way: str = "") -> dict:
    """Median and min milliseconds of volnet's and torch's timed calls (from :func:`compare_interleaved`),
    the ratio volnet time / torch time, and with ``images`` per call, images/s (over the median).

    ``way`` is added to every key's library part: ``"_fresh"`` gives ``volnet_fresh_ms`` ...
    ``ratio_fresh`` for the times of :func:`compare_fresh`. Entries are None
    for a library that did not run.
    """
    row = {}
    for name in LIBRARIES:
        seconds = times.get(name)
        row[f"{name}{way}_ms"] = 1e3 * statistics.median(seconds) if seconds else None
        row[f"{name}{way}_min_ms"] = 1e3 * min(seconds) if seconds else None
        if images is not None:
            row[f"{name}{way}_images_per_s"] = images / statistics.median(seconds) if seconds else None
    volnet_ms, torch_ms = row[f"volnet{way}_ms"], row[f"torch{way}_ms"]
    row[f"ratio{way}"] = volnet_ms / torch_ms if volnet_ms and torch_ms else None
    return row


def add_comparison_arguments(parser: argparse.ArgumentParser, rounds: int, calls: int,
                             quick: tuple[int, int] | None = None) -> None:
    """The options every comparison with PyTorch shares: most rounds and calls, the time budget of a case,
    ``--no-fresh``, and ``--child``, with which the script runs itself in a fresh process.

    ``quick``: the rounds and calls that a script's ``--quick`` defaults to instead; ``--rounds`` and
    ``--calls`` then default to None, for the script to fill in.
    """
    quick_rounds, quick_calls = (f" ({value} with --quick)" for value in quick) if quick else ("", "")
    parser.add_argument("--rounds", type=int, default=None if quick else rounds,
                        help=f"most rounds in which the libraries take turns (fewer for a case that would pass "
                             f"--budget, never below {MIN_ROUNDS}); default {rounds}{quick_rounds}")
    parser.add_argument("--calls", type=int, default=None if quick else calls,
                        help=f"most timed calls per library and round (cut first for a heavy case); "
                             f"default {calls}{quick_calls}")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS,
                        help=f"about how many seconds to spend on one case with the libraries taking turns; the "
                             f"fresh processes take about as long again (default {BUDGET_SECONDS:g})")
    parser.add_argument("--no-fresh", dest="fresh", action="store_false",
                        help="skip the comparison in fresh processes (each library alone in a new interpreter)")
    parser.add_argument("--child", choices=LIBRARIES,
                        help="(what the script runs in a fresh process) time this library alone on the one case "
                             "named: a few warm-up calls, then --calls timed calls; print them as JSON")


def cell(value, spec: str) -> str:
    """``value`` formatted with ``spec`` for a table; "-" for None (torch not installed)."""
    return "-" if value is None else format(value, spec)


def fresh_columns(ms_format: str) -> tuple:
    """The :class:`Table` columns every comparison ends with: the fresh processes' times and ratio (times
    formatted with ``ms_format``), then the rounds x calls the libraries took turns for."""
    return (("fresh volnet ms", 15, lambda r: cell(r["volnet_fresh_ms"], ms_format)),
            ("fresh torch ms", 14, lambda r: cell(r["torch_fresh_ms"], ms_format)),
            ("fresh volnet/torch", 18, lambda r: cell(r["ratio_fresh"], ".2f")),
            ("rounds x calls", 14, lambda r: f"{r['rounds']} x {r['calls']}"))


@dataclass(frozen=True)
class Table:
    """A table printed row by row as the results come: ``columns`` of ``(heading, width, row -> text)``,
    the first ``left`` of them left-aligned, the rest right-aligned."""

    columns: tuple
    left: int = 1

    def widened(self, first: int) -> Table:
        """The same table with its first column ``first`` characters wide (to fit the labels of this run)."""
        heading, _, text = self.columns[0]
        return replace(self, columns=((heading, first, text), *self.columns[1:]))

    def print_heading(self) -> None:
        self._print([heading for heading, _, _ in self.columns])
        self._print(["-" * width for _, width, _ in self.columns])

    def print_row(self, row: dict) -> None:
        self._print([text(row) for _, _, text in self.columns])

    def _print(self, cells) -> None:
        print("  ".join(str(c).ljust(w) if i < self.left else str(c).rjust(w)
                        for i, (c, (_, w, _)) in enumerate(zip(cells, self.columns))), flush=True)


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


def child_settings(library: str):
    """A fresh process's settings for timing ``library`` alone; returns the torch module for "torch", else None.

    volnet's process gets what the ``volnet`` command sets (:func:`configure_volnet`);
    torch's gets its thread count matched to NumPy's BLAS (:func:`match_threads`)
    and nothing of volnet's.
    """
    if library == "volnet":
        configure_volnet()
        return None
    import torch
    match_threads(torch)
    return torch


def process_view(torch) -> dict:
    """What this process runs with: NumPy's BLAS and threads, torch's version and threads (None where torch
    is not given), whether torch is loaded at all, and volnet's process settings (``volnet.configure()``
    with no argument only reads them: ``{"keep_freed_memory": ..., ...}``)."""
    blas = blas_info()
    return {"numpy": np.__version__, "blas": {key: blas.get(key) for key in BLAS_KEYS},
            "torch": torch.__version__ if torch else None, "torch_threads": torch.get_num_threads() if torch else None,
            "torch_loaded": "torch" in sys.modules, "volnet_settings": volnet.configure()}


def report_alone(library: str, fn, calls: int, torch) -> None:
    """A child's whole output: ``fn`` timed alone (:data:`FRESH_WARMUP_CALLS` untimed calls, then ``calls``
    timed calls) and :func:`process_view`, as one line of JSON on stdout."""
    for _ in range(FRESH_WARMUP_CALLS - 1):  # compare_interleaved makes the last one
        fn()
    seconds = compare_interleaved({library: fn}, rounds=1, calls=calls)[library]
    print(json.dumps({"seconds": seconds, "process": process_view(torch)}))


def time_in_fresh_process(script: str, library: str, case: list, calls: int) -> dict:
    """Run ``benchmarks/<script>.py --child LIBRARY --calls CALLS *case`` in a new interpreter (this one's
    executable and environment); returns what it printed (:func:`report_alone`): ``{"seconds", "process"}``."""
    command = [sys.executable, str(BENCHMARKS / f"{script}.py"), "--child", library, "--calls", str(calls),
               *map(str, case)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_fresh(script: str, case: list, calls: int, libraries) -> tuple[dict, dict]:
    """``({library: seconds of its timed calls}, {library: its process view})``, each library timed alone in
    a fresh process (:func:`time_in_fresh_process`) on the case that the script's options ``case`` name."""
    runs = {library: time_in_fresh_process(script, library, case, calls) for library in libraries}
    return ({library: run["seconds"] for library, run in runs.items()},
            {library: run["process"] for library, run in runs.items()})


def process_summary(view: dict) -> str:
    """A :func:`process_view` in words: the threads of the library it timed, NumPy's BLAS kernel, whether torch
    was loaded, which of volnet's process settings were on."""
    threads = view["torch_threads"] if view["torch"] else view["blas"]["num_threads"]
    settings = ", ".join(f"{name} {'on' if on else 'off'}" for name, on in view["volnet_settings"].items())
    return (f"{threads} threads, NumPy's BLAS {view['blas']['architecture']} kernel, "
            f"torch {'loaded' if view['torch_loaded'] else 'not loaded'}; volnet's settings: {settings}")


def print_fresh_processes(views: dict) -> None:
    """One line per library that ran in fresh processes: :func:`process_summary` of its view."""
    for library, view in views.items():
        print(f"fresh {library} process: {process_summary(view)}")


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
    (:func:`results_folder`; overwritten by the next run on the same kind of machine).

    Made when the run starts, to note the time (UTC) and the load average;
    the file also holds the machine, the versions, NumPy's BLAS, whether the
    OpenBLAS variables that slow it were set, the load average at the end,
    the method, the rows and what the script adds (``extra``: the fresh
    processes' view of their setup, per library, where it ran them). Sorted keys, an indent of 2 and floats to 4
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
                         "torch": installed_version("torch"), "onnxruntime": installed_version("onnxruntime")},
            "blas": {key: blas.get(key) for key in BLAS_KEYS},
            "openblas_variables_set": {name: bool(os.environ.get(name)) for name in SLOW_BLAS_VARIABLES},
            "load_average": {"start": list(self.load_start), "end": list(os.getloadavg())},
            "method": method,
            "rows": rows,
            **extra,
        }
        folder = results_folder() / machine_kind()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(significant(record), indent=2, sort_keys=True) + "\n")
        print(f"\nwrote {os.path.relpath(path)}")
        return path
