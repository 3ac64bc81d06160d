"""MNIST from its four IDX files, gzipped or not.

The IDX format (from the MNIST page): a 4-byte magic number ``0x00 0x00 T n``
where ``T`` is the element type and ``n`` the number of dimensions, then
``n`` big-endian uint32 sizes, then the elements in C order, big-endian.
MNIST's images are ``0x00000803`` (unsigned bytes, 3-D: N x 28 x 28) and its
labels ``0x00000801`` (unsigned bytes, 1-D: N).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .bundled import Dataset, bytes_to_unit
from .download import data_root, fetch, missing_files_error
from .errors import DataError

# IDX type code -> element type (big-endian where it matters).
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
GZIP_MAGIC = b"\x1f\x8b"
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_CLASSES = tuple(str(d) for d in range(10))


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw.startswith(GZIP_MAGIC):  # IDX files start with two zero bytes, so this cannot mistake one
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip file ({error}); delete it and download it again") from None


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not), in native byte order.

    Raises:
        DataError: the file is too short for its header or for the sizes the
            header promises, has bytes left over, or does not start with an
            IDX magic number.

    Example:
        >>> read_idx("t10k-labels-idx1-ubyte.gz").shape   # doctest: +SKIP
        (10000,)
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated, {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: wrong magic number 0x{magic:08X}; not an IDX file (an IDX file starts with "
                        f"0x0000, a type code such as 0x08 for unsigned bytes, and the number of dimensions)")
    dtype = IDX_TYPES[raw[2]]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated, {len(raw)} bytes is too short for the header of a {ndim}-D IDX array")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise DataError(f"{path}: truncated, the header promises {' x '.join(map(str, shape))} elements "
                        f"({expected} bytes) but only {got} bytes follow; delete it and download it again")
    if got > expected:
        raise DataError(f"{path}: {got - expected} unexpected bytes after the {' x '.join(map(str, shape))} "
                        f"elements its header declares")
    data = np.frombuffer(raw, dtype, expected // dtype.itemsize, header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _check_magic(path: Path, array: np.ndarray, magic: int, what: str):
    ndim = magic & 0xFF
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise DataError(f"{path}: expected MNIST {what} (IDX magic 0x{magic:08X}: unsigned bytes, {ndim}-D), "
                        f"got {array.ndim}-D {array.dtype}")


def load_mnist(root=None, split: str = "train", *, download: bool = False) -> Dataset:
    """MNIST ``split`` from ``root`` (default: the cache): images ``(N, 28, 28, 1)`` in [0, 1], labels 0-9.

    Reads ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (or the
    ``t10k-`` pair for ``split="test"``), each plain or with ``.gz``.

    Raises:
        DataError: files missing (the message lists the paths and the fetch
            call), malformed, or images and labels of different counts.
    """
    folder = data_root("mnist", root)
    stems = MNIST_FILES[split]
    paths = [_find(folder, stem) for stem in stems]
    if None in paths and download:
        fetch("mnist", root)
        paths = [_find(folder, stem) for stem in stems]
    if None in paths:
        raise missing_files_error("mnist", root, [folder / f"{stem}[.gz]" for stem in stems])
    images_path, labels_path = paths
    images, labels = read_idx(images_path), read_idx(labels_path)
    _check_magic(images_path, images, IMAGES_MAGIC, "images")
    _check_magic(labels_path, labels, LABELS_MAGIC, "labels")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
                        f"the two files must come from the same split")
    if labels.size and labels.max() >= len(MNIST_CLASSES):
        raise DataError(f"{labels_path}: label {labels.max()} is not a digit 0-9")
    return Dataset(bytes_to_unit(images[..., np.newaxis]), labels.astype(np.int64), MNIST_CLASSES)
