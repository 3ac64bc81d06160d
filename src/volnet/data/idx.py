"""MNIST from its four IDX files, gzipped or not.

The IDX format (from the MNIST page): a 4-byte magic number ``0x00 0x00 T n``
where ``T`` is the element type and ``n`` the number of dimensions, then
``n`` big-endian uint32 sizes, then the elements in C order, big-endian.
MNIST's images are ``0x00000803`` (unsigned bytes, 3-D: N x 28 x 28) and its
labels ``0x00000801`` (unsigned bytes, 1-D: N).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from .bundled import Dataset, bytes_to_unit
from .download import data_root, fetch, missing_files_error
from ..resources import ResourceError, require_memory
from .errors import DataError

# IDX type code -> element type (big-endian where it matters).
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
GZIP_MAGIC = b"\x1f\x8b"
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_CLASSES = tuple(str(d) for d in range(10))


def _open(path: Path):
    """``path`` as a stream of IDX bytes, inflated on the fly when gzipped (told by content, not by name)."""
    with open(path, "rb") as file:
        gzipped = file.read(2) == GZIP_MAGIC  # IDX files start with two zero bytes, so this cannot mistake one
    return (gzip.open if gzipped else open)(path, "rb"), gzipped


def _read_into(stream, buffer: np.ndarray) -> int:
    """Fill the byte array ``buffer`` from ``stream``; the bytes read, fewer only where the stream ends."""
    view, got = memoryview(buffer), 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _payload_bytes(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The bytes ``shape`` elements of ``dtype`` take, counted in Python ints so that an absurd header cannot wrap."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > np.iinfo(np.intp).max:
        raise DataError(f"{path}: the header declares {' x '.join(map(str, shape))} elements ({nbytes} bytes), "
                        f"more than a 64-bit size can count; the file is corrupt or not an IDX file")
    return nbytes


def _allocate(path: Path, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
    """An empty byte buffer for the payload, refused before allocation when the machine cannot hold it."""
    try:
        require_memory(nbytes, f"{path}: the {' x '.join(map(str, shape))} array its header declares",
                       "the file is corrupt, or needs a machine with more memory")
    except ResourceError as error:
        raise DataError(str(error)) from None
    return np.empty(nbytes, np.uint8)


def _read_idx(path: Path, stream, gzipped: bool) -> np.ndarray:
    """Header first, then exactly the bytes it declares: a stream that is longer is refused, never inflated whole."""
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(f"{path}: truncated, {len(head)} bytes is too short for an IDX header")
    magic = int.from_bytes(head, "big")
    ndim = head[3]
    if head[:2] != b"\0\0" or head[2] not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: wrong magic number 0x{magic:08X}; not an IDX file (an IDX file starts with "
                        f"0x0000, a type code such as 0x08 for unsigned bytes, and the number of dimensions)")
    dtype = IDX_TYPES[head[2]]
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(f"{path}: truncated, {4 + len(sizes)} bytes is too short for the header of a {ndim}-D "
                        f"IDX array")
    shape = tuple(int.from_bytes(sizes[i: i + 4], "big") for i in range(0, 4 * ndim, 4))
    dims = " x ".join(map(str, shape))
    expected = _payload_bytes(path, shape, dtype)
    if gzipped:
        buffer = _allocate(path, shape, expected)
        got = _read_into(stream, buffer)
        if got == expected and stream.read(1):  # one byte more is enough to refuse: the rest stays deflated
            raise DataError(f"{path}: unexpected bytes after the {dims} elements ({expected} bytes) its header "
                            f"declares; the gzip stream inflates to more than that")
    else:  # a plain file's size says how many bytes follow the header, before anything is allocated
        got = path.stat().st_size - len(head) - len(sizes)
    if got < expected:
        raise DataError(f"{path}: truncated, the header promises {dims} elements "
                        f"({expected} bytes) but only {got} bytes follow; delete it and download it again")
    if got > expected:
        raise DataError(f"{path}: {got - expected} unexpected bytes after the {dims} elements its header declares")
    if not gzipped:
        buffer = _allocate(path, shape, expected)
        _read_into(stream, buffer)
    data = buffer.view(dtype).reshape(shape)
    if dtype.byteorder == ">":
        data = data.byteswap(inplace=True).view(dtype.newbyteorder("="))  # native order in place: no second copy
    return data


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not), in native byte order.

    Raises:
        DataError: the file is too short for its header or for the sizes the
            header promises, has bytes left over, does not start with an
            IDX magic number, or its header declares more than a 64-bit size
            counts or this machine holds. The header is read first and only
            the bytes it declares are inflated, so a gzip bomb is refused
            after one byte too many.

    Example:
        >>> read_idx("t10k-labels-idx1-ubyte.gz").shape   # doctest: +SKIP
        (10000,)
    """
    path = Path(path)
    stream, gzipped = _open(path)
    try:
        with stream:
            return _read_idx(path, stream, gzipped)
    except (OSError, EOFError, zlib.error) as error:
        if not gzipped:
            raise
        raise DataError(f"{path}: corrupt or truncated gzip file ({error}); delete it and download it again") from None


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
