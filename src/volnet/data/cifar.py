"""CIFAR-10 from the official binary or python batches, or from their tarballs.

Layouts read, in ``root`` (default: the cache):

* ``cifar-10-batches-bin/``: ``data_batch_1.bin`` .. ``data_batch_5.bin``,
  ``test_batch.bin``; records of 1 label byte + 3072 pixel bytes, the pixels
  as three 32 x 32 planes (R, G, B). Class names in ``batches.meta.txt``.
* ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``; pickled dicts with ``b"data"`` (uint8, 10000 x 3072, same
  plane order) and ``b"labels"``. Class names in ``batches.meta``. These are
  read through :class:`RestrictedUnpickler`, which builds NumPy arrays and
  nothing else: a pickle that names any other callable is refused.
* ``cifar-10-python.tar.gz`` / ``cifar-10-binary.tar.gz``: extracted in
  place on first use (with tarfile's ``"data"`` filter: no absolute paths,
  no ``..``, no links out of the folder, no device files).
* ``root`` itself holding the batch files.
"""

from __future__ import annotations

import codecs
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
from numpy._core.multiarray import _reconstruct
from numpy._core.numeric import _frombuffer

from .bundled import Dataset, bytes_to_unit
from .download import data_root, fetch, missing_files_error
from .errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SIDE, CHANNELS = 32, 3
PIXELS = SIDE * SIDE * CHANNELS
RECORD = 1 + PIXELS
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
PYTHON_DIR, BINARY_DIR = "cifar-10-batches-py", "cifar-10-batches-bin"
TARBALLS = {PYTHON_DIR: "cifar-10-python.tar.gz", BINARY_DIR: "cifar-10-binary.tar.gz"}

# Everything a CIFAR-10 python batch needs to be rebuilt: NumPy's array and
# dtype constructors under their NumPy 1 and NumPy 2 module names, and the
# helper Python 3 uses to pickle bytes at protocol 2. None of them runs code.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds NumPy arrays, lists, dicts and strings, and refuses every other global."""

    def find_class(self, module, name):
        try:
            return SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only NumPy arrays, "
                            f"lists and strings, so this file is not one (or has been tampered with)") from None

    def persistent_load(self, pid):
        raise DataError("refusing a pickle with persistent ids: not a CIFAR-10 batch")


def unpickle(path: Path):
    """The object pickled in ``path``, rebuilt by :class:`RestrictedUnpickler` (Python 2 pickles included)."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="bytes").load()
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    except Exception as error:  # a damaged pickle can fail in many ways; none of them is the caller's bug
        raise DataError(f"{path}: not a readable CIFAR-10 python batch ({type(error).__name__}: {error})") from None


def _entry(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):  # Python 2 pickles give bytes keys, Python 3 ones str keys
        if k in batch:
            return batch[k]
    raise DataError(f"{path}: no {key!r} entry; a CIFAR-10 batch has 'data' and 'labels'")


def _check_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}, not the classes 0-9")
    return labels.astype(np.int64)


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(n, 3072)`` uint8 and labels ``(n,)`` int64 from one python batch."""
    batch = unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    data = _entry(batch, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        described = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' should be a uint8 array of shape (n, {PIXELS}), got a {described}")
    try:
        labels = np.asarray(_entry(batch, "labels", path), dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{path}: 'labels' is not a list of integers ({error})") from None
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    return data, _check_labels(labels, path)


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(n, 3072)`` uint8 and labels ``(n,)`` int64 from one binary batch."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte records "
                        f"(1 label byte + {PIXELS} pixel bytes); truncated or not a CIFAR-10 binary batch")
    records = raw.reshape(-1, RECORD)
    return records[:, 1:], _check_labels(records[:, 0], path)


def _class_names(folder: Path) -> tuple[str, ...]:
    text, pickled = folder / "batches.meta.txt", folder / "batches.meta"
    if text.is_file():
        names = [line.strip() for line in text.read_text(encoding="utf-8", errors="replace").splitlines()]
    elif pickled.is_file():
        meta = unpickle(pickled)
        names = _entry(meta, "label_names", pickled) if isinstance(meta, dict) else None
        if not isinstance(names, list):
            raise DataError(f"{pickled}: expected a dict with a 'label_names' list")
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    else:
        return CLASSES
    names = [n for n in names if n]
    if len(names) != len(CLASSES):
        raise DataError(f"{text if text.is_file() else pickled}: lists {len(names)} class names, CIFAR-10 has 10")
    return tuple(names)


def extract(tarball: Path, folder: Path, member_dir: str) -> Path:
    """Unpack ``member_dir/`` from ``tarball`` into ``folder``; return ``folder / member_dir``.

    The archive is unpacked into a temporary folder first and moved into
    place only when complete, so a bad archive leaves nothing behind.
    """
    if not hasattr(tarfile, "data_filter"):
        raise DataError(f"this Python's tarfile cannot extract safely (needs Python 3.10.12+ / 3.11.4+); "
                        f"extract {tarball} by hand so that {folder / member_dir} exists")
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=folder))
    try:
        with tarfile.open(tarball, "r:*") as tar:
            tar.extractall(tmp, filter="data")
        if not (tmp / member_dir).is_dir():
            raise DataError(f"{tarball}: has no {member_dir}/ folder; not the official CIFAR-10 archive")
        os.replace(tmp / member_dir, folder / member_dir)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        reason = "; ".join(line.strip("- ") for line in str(error).splitlines())  # tarfile's: a line per method
        raise DataError(f"{tarball}: bad or corrupt archive ({type(error).__name__}: {reason}); "
                        f"delete it and download it again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / member_dir


def _batches_dir(folder: Path) -> Path | None:
    for sub in (PYTHON_DIR, BINARY_DIR):
        if (folder / sub).is_dir():
            return folder / sub
    if any((folder / f"test_batch{ext}").is_file() or (folder / f"data_batch_1{ext}").is_file()
           for ext in ("", ".bin")):
        return folder
    for sub, tarball in TARBALLS.items():
        if (folder / tarball).is_file():
            return extract(folder / tarball, folder, sub)
    return None


def load_cifar10(root=None, split: str = "train", *, download: bool = False) -> Dataset:
    """CIFAR-10 ``split`` from ``root`` (default: the cache): images ``(N, 32, 32, 3)`` in [0, 1].

    Raises:
        DataError: no batches or tarball found (the message lists the paths
            and the fetch call), a batch missing, truncated or malformed, or
            a python batch that tries to unpickle anything but NumPy arrays.
    """
    folder = data_root("cifar10", root)
    batches = _batches_dir(folder) if folder.is_dir() else None
    if batches is None and download:
        fetch("cifar10", root)
        batches = _batches_dir(folder)
    if batches is None:
        raise missing_files_error("cifar10", root, [folder / PYTHON_DIR, folder / BINARY_DIR]
                                  + [folder / t for t in TARBALLS.values()])
    pixels, labels = [], []
    for name in BATCHES[split]:
        binary, python = batches / f"{name}.bin", batches / name
        if binary.is_file():
            data, y = read_binary_batch(binary)
        elif python.is_file():
            data, y = read_python_batch(python)
        else:
            raise DataError(f"{batches}: batch {name} (or {name}.bin) is missing; "
                            f"the {split} split needs {', '.join(BATCHES[split])}")
        pixels.append(data)
        labels.append(y)
    planes = np.concatenate(pixels).reshape(-1, CHANNELS, SIDE, SIDE)  # (N, D, H, W) as stored
    return Dataset(bytes_to_unit(planes.transpose(0, 2, 3, 1)), np.concatenate(labels), _class_names(batches))
