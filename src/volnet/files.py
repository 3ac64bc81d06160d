"""Files written so that a crash never leaves half of one: a temporary file in the same folder, flushed to
disk, then renamed over the old file. Checkpoints, history files, the report page and ONNX exports use it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(path: Path, error: OSError) -> OSError:
    """A failed write as one line naming the file meant (not the hidden temporary one) and what is intact."""
    intact = f"the previous {path.name} is intact" if path.exists() else f"nothing was written to {path}"
    wrapped = OSError(f"could not write {path}: {error.strerror or error}; {intact}")
    wrapped.errno = error.errno
    return wrapped


def atomic_write(path, write: Callable) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``, so that readers see
    the old file or the new one, never a torn one. The file gets the usual permissions (0666 less the umask).
    An OSError (a full disk, a file-size limit) names ``path`` and says what is intact, not the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda file: file.write(data))
