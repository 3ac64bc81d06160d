"""Download MNIST and CIFAR-10 into a cache folder, verifying every file's checksum.

Nothing is downloaded behind the user's back: :func:`volnet.data.load` only
reads files, and says which ``fetch`` call would put them in place, unless it
is given ``download=True``.

Where files go: ``root`` when given, else ``$VOLNET_DATA/<name>``, else
``~/.cache/volnet/<name>``. Each file is streamed to a temporary file in that
folder, hashed on the way, and renamed into place only when the digest
matches, so a partial or corrupt download never sits where a loader would
read it.

The tables below are module constants so that tests (and users behind a
mirror) can point them elsewhere; ``urllib`` reads ``file://`` URLs too.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DataError

CACHE_ENV = "VOLNET_DATA"
DEFAULT_CACHE = Path("~") / ".cache" / "volnet"

# Base URLs, tried in order. yann.lecun.com is MNIST's home but often refuses
# downloads; the S3 copy (the one torchvision uses) serves the same files.
URLS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}
FILES = {
    "mnist": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "cifar10": ("cifar-10-python.tar.gz",),
}
# (algorithm, hex digest) as published: MD5 is all that MNIST and CIFAR-10 publish.
CHECKSUMS = {
    "train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels-idx1-ubyte.gz": ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
    "t10k-images-idx3-ubyte.gz": ("md5", "9fb629c4189551a2d022fa330f9573f3"),
    "t10k-labels-idx1-ubyte.gz": ("md5", "ec29112dd5afa0611ce80d1b7f02629c"),
    "cifar-10-python.tar.gz": ("md5", "c58f30108f718f92721af3b95e74349a"),
    "cifar-10-binary.tar.gz": ("md5", "c32a1d4ab5d03f1284b67883e8d87530"),
}
TIMEOUT_S = 60
CHUNK = 1 << 20


def cache_dir() -> Path:
    """The cache folder: ``$VOLNET_DATA`` if set, else ``~/.cache/volnet``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def data_root(name: str, root=None) -> Path:
    """The folder holding data set ``name``: ``root`` when given, else ``cache_dir() / name``."""
    return Path(root).expanduser() if root is not None else cache_dir() / name


def fetch_hint(name: str, root=None) -> str:
    """The call that downloads ``name`` into the folder ``load(name, root)`` reads."""
    where = "" if root is None else f", root={str(root)!r}"
    command = "" if root is None else f" --root {root}"
    return f'`volnet fetch {name}{command}` or volnet.data.fetch("{name}"{where})'


def missing_files_error(name: str, root, expected) -> DataError:
    """A :class:`DataError` listing the files ``load`` looked for and how to get them."""
    paths = ", ".join(str(p) for p in expected)
    return DataError(
        f"{name}: data files not found; expected {paths}; "
        f"download them with {fetch_hint(name, root)} (or load(..., download=True)), "
        f"or place the files there by hand"
    )


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, algorithm: str, expected: str) -> None:
    """Stream ``url`` to a temporary file beside ``dest``; rename it into place only if its digest matches."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.new(algorithm, usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != expected:
            raise DataError(f"checksum mismatch: {algorithm} {h.hexdigest()}, expected {expected}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch(name: str, root=None) -> Path:
    """Download data set ``name`` (``"mnist"`` or ``"cifar10"``) and return the folder that holds it.

    Files already present with the right checksum are kept; others are
    downloaded from each base URL in ``URLS[name]`` in turn until one gives
    the published digest.

    Raises:
        DataError: unknown name, or no URL gave a file with the right checksum
            (offline, moved, corrupt); the message names the path to place the
            file at by hand. A bad download is never left in place.

    Example:
        >>> folder = fetch("mnist")                     # doctest: +SKIP
        >>> load("mnist", split="test").images.shape    # doctest: +SKIP
        (10000, 28, 28, 1)
    """
    if name not in FILES:
        raise DataError(f"nothing to download for {name!r}; fetch knows {', '.join(FILES)}")
    folder = data_root(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    for filename in FILES[name]:
        algorithm, expected = CHECKSUMS[filename]
        dest = folder / filename
        if dest.is_file() and _digest(dest, algorithm) == expected:
            continue
        failures = []
        for base in URLS[name]:
            url = base + filename
            try:
                _download(url, dest, algorithm, expected)
                break
            except (DataError, urllib.error.URLError, OSError, ValueError) as error:
                failures.append(f"{url}: {getattr(error, 'reason', error)}")
        else:
            tried = "; ".join(failures)
            raise DataError(f"could not download {filename} ({tried}); "
                            f"download it by hand and place it at {dest}")
    return folder
