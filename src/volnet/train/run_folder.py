"""A run folder: the files one training run writes, and a lock so that only one run writes them.

``runs/NAME/`` holds::

    checkpoint.safetensors    the run's state (weights, optimizer, position, history)
    best.safetensors          with --keep-best: the state after the best epoch so far
    history.json, history.csv the per-epoch records, rewritten after every checkpoint
    .volnet.lock              held (flock) by the run writing here; names its holder

The checkpoint is the source of truth: the history files are a readable copy
of its ``history`` field, rewritten from it when a run resumes (a kill
between the two writes leaves them an epoch behind). The names of the files
that hold a run's state belong to the checkpoint format
(:data:`volnet.train.checkpoint.CHECKPOINT_NAME`, ``HISTORY_NAMES``); the lock
is this module's.

The lock is an advisory ``flock`` on ``.volnet.lock``: the kernel releases it
when its process ends, however it ends, so a ``kill -9`` leaves no stale lock
behind. Where ``fcntl`` does not exist (Windows), runs are not locked.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .checkpoint import BEST_NAME, CHECKPOINT_NAME, HISTORY_NAMES

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".volnet.lock"


class RunFolderError(ValueError):
    """A run folder that cannot be written, is in use, or already holds a run."""


class RunFolderBusy(RunFolderError):
    """Another process is training into the same folder."""


class RunExists(RunFolderError):
    """The folder holds a run that a fresh run would overwrite."""


class RunFolder:
    """The files of one training run in ``path``; nothing is created until :meth:`prepare`."""

    def __init__(self, path):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def best(self) -> Path:
        return self.path / BEST_NAME

    @property
    def history_files(self) -> tuple[Path, ...]:
        return tuple(self.path / name for name in HISTORY_NAMES)

    def holds_run(self) -> bool:
        return self.checkpoint.is_file()

    def prepare(self) -> None:
        """Create the folder, or say clearly why it cannot be written to (before any training is done)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"the output folder {self.path} is a file; choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"cannot create the output folder {self.path} ({error.strerror}); "
                                 "choose another --out") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunFolderError(f"the output folder {self.path} is not writable; choose another --out "
                                 "or change its permissions")

    @contextmanager
    def lock(self):
        """Hold the folder for one run; :class:`RunFolderBusy`, naming the holder, if another run has it."""
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        try:
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise RunFolderError(f"cannot write to the output folder {self.path} ({error.strerror}); "
                                 "choose another --out") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunFolderBusy(f"{self.path} is in use by another training run ({self._holder(fd)}); "
                                    "wait for it to finish, or choose another --out") from None
            holder = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "command": " ".join(sys.argv)}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @staticmethod
    def _holder(fd) -> str:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"pid {holder['pid']}, started {holder['started']}: {holder['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the temporary files of saves that were killed midway (only safe while holding the lock)."""
        stale = [p for name in (CHECKPOINT_NAME, BEST_NAME, *HISTORY_NAMES) for p in self.path.glob(f".{name}.*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def clear(self) -> None:
        """Remove a previous run's checkpoint, best epoch and history (``--overwrite``)."""
        for path in (self.checkpoint, self.best, *self.history_files):
            path.unlink(missing_ok=True)
