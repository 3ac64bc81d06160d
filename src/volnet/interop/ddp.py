"""The DDP launcher: ``volnet train --engine torch --nproc N`` as N worker processes on this machine.

:func:`check_workers` refuses worker counts the machine cannot hold before
any worker starts; :func:`launch` starts the workers with PyTorch's elastic
launcher and says how they ended (:class:`Workers`), one line for a
failure; :func:`follow_launcher`, called by each worker's
:class:`~volnet.interop.torch_engine.TorchEngine`, ends a worker whose
launcher is gone. PyTorch is imported when a function here needs it, never
when volnet is imported.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..resources import describe_bytes, resident_memory, usable_cores, usable_memory
from .torch_setup import EngineError, require_torch


def check_workers(nproc: int, device: str, step_bytes: int = 0) -> None:
    """An EngineError when this machine cannot hold ``nproc`` workers; one line naming both figures.

    Each worker is a process like this one (Python, PyTorch and volnet
    loaded: :func:`~volnet.resources.resident_memory`) that also trains
    (``step_bytes``: the training step's memory at the worker's share of the
    batch, from :mod:`volnet.analysis`). The workers must fit in the usable
    memory (:func:`~volnet.resources.usable_memory`) and, on CPU, be no more
    than the cores this process may run on (:func:`~volnet.resources.usable_cores`;
    more workers than cores only slow each step); on CUDA, one GPU each.
    """
    torch = require_torch()
    if device == "cuda" and nproc > torch.cuda.device_count():
        raise EngineError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} CUDA GPUs, one per worker")
    cores = usable_cores()
    each = (resident_memory() or 0) + step_bytes
    usable = usable_memory()
    by_memory = nproc if usable is None or each == 0 else usable // each
    by_cores = cores if device == "cpu" else nproc
    if nproc <= min(by_memory, by_cores):
        return
    fits = max(1, min(by_memory, by_cores))
    has = f"{cores} cores" + (" (one worker each)" if device == "cpu" else "")
    if usable is not None:
        parts = f": {describe_bytes(each - step_bytes)} for the process and {describe_bytes(step_bytes)} for " \
                "its training step" if step_bytes else " (the size of this process)"
        has += f" and {describe_bytes(usable)} of usable memory, where each worker needs about " \
               f"{describe_bytes(each)}{parts}"
    raise EngineError(f"--nproc {nproc}: this machine holds at most {fits} worker{'s' * (fits != 1)}: it has {has}; "
                      f"use --nproc {fits} or fewer")


LAUNCHER_PID = "VOLNET_LAUNCHER_PID"  # set by launch() for its workers: the process they live and die with
WATCH_SECONDS = 0.5  # how often a worker checks that its launcher is still there, where no parent-death signal
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def follow_launcher() -> None:
    """In a worker started by :func:`launch`: end this process (SIGKILL) the moment the launcher is gone.

    Workers run in sessions of their own (PyTorch's launcher starts them so),
    so a launcher killed with SIGKILL would leave them training and writing
    its run folder. On Linux the kernel sends the worker SIGKILL when its
    parent exits (``prctl(PR_SET_PDEATHSIG)``); everywhere, a daemon thread
    checks every :data:`WATCH_SECONDS` that the parent is still the launcher
    and ends the process when it is not; a launcher already gone when this
    runs ends it at once. Killed so, a worker writes nothing more: the run
    folder keeps its last complete checkpoint and rank 0's lock goes with it.
    Nothing happens outside :func:`launch`'s workers (torchrun has its own rules).
    """
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher is None or not launcher.isdigit():
        return
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl in this C library: the thread below still watches
            pass
    if os.getppid() != int(launcher):
        _end_orphan()
    threading.Thread(target=_watch_launcher, args=(int(launcher),), name="volnet-follow-launcher",
                     daemon=True).start()


def _watch_launcher(launcher: int) -> None:
    while os.getppid() == launcher:
        time.sleep(WATCH_SECONDS)
    _end_orphan()


def _end_orphan() -> None:
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
    os._exit(137)  # where the signal did not end the process at once


@dataclass(frozen=True)
class Workers:
    """How :func:`launch`'s workers ended: the exit code; ``output``, one worker's standard error to show
    as it is (rank 0's after a run that ended on its own or by a signal, a failed worker's own error
    message); ``error``, a line saying why the workers failed where none of them said it (else None);
    ``kept``, the folder that holds every worker's standard error, kept after a failure that only
    tracebacks explain (else None)."""

    code: int
    output: str
    error: str | None = None
    kept: Path | None = None


def launch(argv: list[str], nproc: int, program: tuple[str, ...] = ("-m", "volnet")) -> Workers:
    """Run ``python -m volnet *argv`` as ``nproc`` DDP workers on this machine; returns how they ended.

    ``program``: what ``python`` runs, ``("-m", "volnet")`` or a script's path.

    PyTorch's elastic launcher (what ``torchrun --standalone`` uses) starts the
    workers and rendezvous on a free local port. Ctrl-C or SIGTERM reaches the
    launcher, which passes it to every worker: they stop at the same step,
    rank 0 saves, and the code is 130 or 143. A failed worker's code is returned.
    The workers die with the launcher (:func:`follow_launcher`).

    Each worker's standard error goes to a file in a temporary folder (removed
    at the end; PyTorch's logs, which it writes in ``/tmp/torchelastic_*``,
    are not written), and PyTorch's own log lines are silenced, so that a
    failure reads as one process's would (:func:`_failure`): a worker's own
    error message, once however many workers printed it, rather than the
    tracebacks of the workers that lost contact with it.
    """
    require_torch()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    folder = Path(tempfile.mkdtemp(prefix="volnet-workers-"))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"volnet-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5,
                          logs_specs=_worker_logs(folder))
    settings = {LAUNCHER_PID: str(os.getpid())}
    if "OMP_NUM_THREADS" not in os.environ:  # like torchrun: the workers share the cores rather than each using all
        settings["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    silenced = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # PyTorch's launcher logs each step of a failure; each logger sets its level
    workers = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            elastic_launch(config, sys.executable)(*program, *argv)
        return Workers(0, _read(folder / "0.err"))
    except ChildFailedError as error:
        workers = _failure(error.failures, folder, nproc)
        return workers
    except SignalException as error:
        return Workers(128 + int(error.sigval), _read(folder / "0.err"))
    finally:
        logging.disable(silenced)
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
        if workers is None or workers.kept is None:
            shutil.rmtree(folder, ignore_errors=True)


def _worker_logs(folder: Path):
    """PyTorch's LogsSpecs: worker N's standard error to ``folder/N.err``; standard output to the terminal."""
    from torch.distributed.elastic.multiprocessing.api import LogsDest, LogsSpecs

    class WorkerLogs(LogsSpecs):
        @property
        def root_log_dir(self) -> str:
            return str(folder)

        def reify(self, envs):
            for env in envs.values():
                env["TORCHELASTIC_ERROR_FILE"] = ""  # no error files: the standard error says it
            ranks = range(len(envs))
            return LogsDest(stdouts=dict.fromkeys(ranks, ""), stderrs={r: str(folder / f"{r}.err") for r in ranks},
                            error_files=dict.fromkeys(ranks, os.devnull))

    return WorkerLogs(str(folder))


def _failure(failures: dict, folder: Path, nproc: int) -> Workers:
    """How workers that failed ended, and what to say about it.

    In order: a worker that exited with an output holding no traceback printed its
    own error message (volnet's one line): that output, from the lowest such
    rank (a data error is printed by every worker alike); a worker killed by
    a signal: one line saying so (the others' tracebacks only say that they
    lost contact with it; SIGTERM is the last suspect, as the launcher stops
    the other workers with it); otherwise the last line of the first
    failure's traceback, and the folder with every worker's output is kept
    and named (or its exit code, where it printed nothing).
    """
    def code(failure):
        return 128 - failure.exitcode if failure.exitcode < 0 else failure.exitcode

    outputs = {rank: _read(folder / f"{failure.local_rank}.err") for rank, failure in failures.items()}
    own = [rank for rank in sorted(failures) if failures[rank].exitcode > 0 and outputs[rank].strip()
           and "Traceback (most recent call last)" not in outputs[rank]]
    if own:
        return Workers(code(failures[own[0]]), outputs[own[0]])
    killed = sorted((rank for rank in failures if failures[rank].exitcode < 0),
                    key=lambda r: (failures[r].exitcode == -signal.SIGTERM, failures[r].timestamp, r))
    if killed:
        failure = failures[killed[0]]
        return Workers(code(failure), "", f"worker {killed[0]} of {nproc} (pid {failure.pid}) was killed by "
                       f"{failure.signal_name()}; the other workers were stopped")
    rank = min(failures, key=lambda r: failures[r].timestamp)
    lines = outputs[rank].strip().splitlines()
    if not lines:  # nothing printed (a program that stops on SIGTERM with 143 and says nothing)
        return Workers(code(failures[rank]), "", f"worker {rank} of {nproc} exited with code "
                       f"{failures[rank].exitcode}")
    return Workers(code(failures[rank]), "", f"worker {rank} of {nproc} failed: {lines[-1]} (every worker's output "
                   f"is kept in {folder})", kept=folder)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
