"""A folder of images, one sub-folder per class, read with Pillow.

Layouts::

    root/<class>/*.png|jpg|jpeg                  whole folder = the "train" split
    root/train/<class>/...  root/test/<class>/...  explicit splits

Classes are the sorted sub-folder names (of ``train/`` and ``test/``
together, so a class missing from one split keeps the same label in the
other); images are read in sorted file-name order. Pillow is an optional
dependency: ``pip install volnet[images]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..shapes import pair
from .bundled import Dataset, bytes_to_unit
from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_DIRS = ("train", "test")


def _pillow():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("reading a folder of images needs Pillow: pip install pillow "
                          "(or pip install volnet[images])") from error
    return Image


def _open_image(Image, path, mode):
    try:
        with Image.open(path) as opened:
            return opened.convert(mode)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


def read_image(path, size, grayscale: bool = False) -> np.ndarray:
    """One image file as an ``(H, W, D)`` float32 volume in [0, 1], resized to ``size=(H, W)``."""
    Image = _pillow()
    H, W = pair(size, "size")
    image = _open_image(Image, path, "L" if grayscale else "RGB")
    if (image.height, image.width) != (H, W):
        image = image.resize((W, H), Image.Resampling.BILINEAR)
    return bytes_to_unit(np.asarray(image, dtype=np.uint8).reshape(H, W, 1 if grayscale else 3))


def _class_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _split_folder(root: Path, split: str) -> tuple[Path, list[str]]:
    """The folder holding ``split``'s class folders, and the class names shared by all splits."""
    if any((root / s).is_dir() for s in SPLIT_DIRS):
        if not (root / split).is_dir():
            raise DataError(f"{root} has split folders but no {split}/; expected {root / split}/<class>/*.png")
        return root / split, sorted(set().union(*(_class_names(root / s) for s in SPLIT_DIRS)))
    if split == "test":
        raise DataError(f"{root} has no test/ folder, so there is no test split: the whole folder is the train "
                        f"split. For both, lay it out as {root}/train/<class>/*.png and {root}/test/<class>/*.png")
    return root, _class_names(root)


def load_folder(root, split: str = "train", *, size=None, grayscale: bool = False) -> Dataset:
    """Images under ``root/<class>/`` (or ``root/<split>/<class>/``) as ``(N, H, W, D)`` floats in [0, 1].

    Args:
        root: the folder (required).
        split: ``"train"`` or ``"test"``; see the module docstring for layouts.
        size: ``(H, W)`` (or one int) to resize every image to.
            Default: the first image's size, and all images must share it.
        grayscale: ``D = 1`` (Pillow mode ``"L"``) instead of RGB ``D = 3``.
            Default: False.

    Raises:
        DataError: no root, no class folders or images, an unreadable image,
            or images of different sizes without ``size``.
        ImportError: Pillow is not installed.

    Example:
        >>> load_folder("flowers", size=32).images.shape   # doctest: +SKIP
        (3670, 32, 32, 3)
    """
    if root is None:
        raise DataError('the "folder" data set needs root=<folder with one sub-folder of images per class>')
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; expected {root}/<class>/*.png|jpg|jpeg")
    target = pair(size, "size") if size is not None else None
    if target is not None and min(target) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    folder, classes = _split_folder(root, split)
    if not classes:
        raise DataError(f"{folder} has no class sub-folders; expected {folder}/<class>/*.png|jpg|jpeg")
    files = [(path, label) for label, name in enumerate(classes) for path in _image_files(folder / name)]
    if not files:
        raise DataError(f"no .png/.jpg/.jpeg images in the class folders of {folder} ({', '.join(classes)})")

    Image = _pillow()
    mode, depth = ("L", 1) if grayscale else ("RGB", 3)
    images = None
    for i, (path, _) in enumerate(files):
        image = _open_image(Image, path, mode)
        if images is None:
            first, target = path, target or (image.height, image.width)
            images = np.empty((len(files), *target, depth), dtype=np.uint8)
        if (image.height, image.width) != target:
            if size is None:
                raise DataError(f"{path} is {image.height}x{image.width} but {first} is {target[0]}x{target[1]} "
                                f"(H x W); pass size=(H, W) to resize every image")
            image = image.resize((target[1], target[0]), Image.Resampling.BILINEAR)
        images[i] = np.asarray(image, dtype=np.uint8).reshape(*target, depth)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return Dataset(bytes_to_unit(images), labels, tuple(classes))
