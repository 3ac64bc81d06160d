"""A folder of images, one sub-folder per class, read with Pillow (:mod:`volnet.data.images`).

Layouts::

    root/<class>/*.png|jpg|jpeg                  whole folder = the "train" split
    root/train/<class>/...  root/test/<class>/...  explicit splits

Classes are the sorted sub-folder names (of ``train/`` and ``test/``
together, so a class missing from one split keeps the same label in the
other); images are read in sorted file-name order. Pillow is an optional
dependency (``pip install pillow``, or the ``images`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..resources import usable_memory
from ..shapes import pair
from .bundled import Dataset, bytes_to_unit
from .errors import DataError
from .images import IMAGE_SUFFIXES, open_image, pillow, read_pixels, require_room

STREAM_HINT_BATCH = 64  # a too-large folder's error suggests --stream when a batch of this many images fits
SPLIT_DIRS = ("train", "test")


def image_paths(paths) -> list[Path]:
    """Image files to predict: each path a file, or a folder standing for its PNG/JPEG files (sorted, not
    searching sub-folders).

    Raises:
        DataError: a path that does not exist, or a folder holding no images.
    """
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = _image_files(path)
            if not found:
                raise DataError(f"{path} is a folder without {', '.join(IMAGE_SUFFIXES)} files; pass image files "
                                "or a folder that holds some")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise DataError(f"{path} does not exist; pass image files or a folder of them")
    return files


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


def folder_files(root, split: str = "train") -> tuple[list[tuple[Path, int]], tuple[str, ...], Path]:
    """``(files, classes, folder)``: every image's ``(path, label)`` in reading order, without reading any.

    Raises:
        DataError: as :func:`load_folder`, for everything but the images' contents.
    """
    if root is None:
        raise DataError('the "folder" data set needs --root FOLDER (root=FOLDER), laid out as '
                        "FOLDER/train/<class>/*.png and FOLDER/test/<class>/*.png (or FOLDER/<class>/*.png for a train split only)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; expected {root}/<class>/*.png|jpg|jpeg")
    folder, classes = _split_folder(root, split)
    if not classes:
        raise DataError(f"{folder} has no class sub-folders; expected {folder}/<class>/*.png|jpg|jpeg")
    layout = f"{folder}/<class>/*.png|jpg|jpeg, one sub-folder per class"
    if len(classes) < 2:
        raise DataError(f"{folder} has one class sub-folder ({classes[0]}): a classifier needs at least two class "
                        f"sub-folders, laid out as {layout}")
    files = [(path, label) for label, name in enumerate(classes) for path in _image_files(folder / name)]
    if not files:
        raise DataError(f"no .png/.jpg/.jpeg images in the class folders of {folder} ({', '.join(classes)})")
    present = {classes[label] for _, label in files}
    if split == "train" and len(present) < 2:
        raise DataError(f"only {folder / present.pop()} holds images; a classifier needs images in at least two "
                        f"class sub-folders, laid out as {layout}")
    return files, tuple(classes), folder


def load_folder(root, split: str = "train", *, size=None, grayscale: bool = False, stream: bool = False,
                workers: int = 0) -> Dataset:
    """Images under ``root/<class>/`` (or ``root/<split>/<class>/``) as ``(N, H, W, D)`` floats in [0, 1].

    Args:
        root: the folder (required).
        split: ``"train"`` or ``"test"``; see the module docstring for layouts.
        size: ``(H, W)`` (or one int) to resize every image to.
            Default: the first image's size, and all images must share it.
        grayscale: ``D = 1`` (Pillow mode ``"L"``) instead of RGB ``D = 3``.
            Default: False.
        stream: keep only the file names: ``images`` is a
            :class:`~volnet.data.stream.FolderImages` that reads the images a
            batch asks for (the same numbers). Default: False
        workers: with ``stream``, processes that read batches ahead (0: read
            in this process). Default: 0

    16-bit images are scaled to 8 bits (0-65535 to 0-255), not clipped.

    Raises:
        DataError: no root, fewer than two class folders (or, for the train
            split, fewer than two holding images), no images, an unreadable
            image, or images of different sizes without ``size`` (with
            ``stream``, found when the image is read).
        ResourceError: the images at ``size`` do not fit in memory.
        ImportError: Pillow is not installed.

    Example:
        >>> load_folder("flowers", size=32).images.shape   # doctest: +SKIP
        (3670, 32, 32, 3)
    """
    target = pair(size, "size") if size is not None else None
    if target is not None and min(target) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    files, classes, folder = folder_files(root, split)
    labels = np.array([label for _, label in files], dtype=np.int64)
    Image = pillow()
    mode, depth = ("L", 1) if grayscale else ("RGB", 3)
    first = files[0][0]
    if target is None:
        image, _ = open_image(Image, first, mode)
        target = (image.height, image.width)
    if stream:
        from .stream import FolderImages

        paths = [path for path, _ in files]
        return Dataset(FolderImages(paths, target, grayscale, resize=size is not None, workers=workers), labels,
                       classes)
    usable = usable_memory()
    one_fits = usable is None or 5 * target[0] * target[1] * depth * STREAM_HINT_BATCH <= usable
    require_room(len(files), *target, depth, f"loading {folder}",
                  ", or --stream to read the images from disk as batches need them (stream=True)" if one_fits else "")
    images = np.empty((len(files), *target, depth), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        images[i] = read_pixels(Image, path, mode, target, size is not None, first)
    return Dataset(bytes_to_unit(images), labels, classes)
