"""A folder of images, one sub-folder per class, read with Pillow.

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

from ..resources import require_memory, usable_memory
from ..shapes import pair
from .bundled import Dataset, bytes_to_unit
from .errors import DataError

STREAM_HINT_BATCH = 64  # a too-large folder's error suggests --stream when a batch of this many images fits
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The only decoders Pillow may use, whatever a file's name or bytes claim: an untrusted file must never reach
# another one (Pillow hands EPS to Ghostscript, a PostScript interpreter).
DECODERS = ("PNG", "JPEG")
SPLIT_DIRS = ("train", "test")
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # integer grayscale wider than 8 bits, read as 16-bit
MODE_NAMES = {"1": "1-bit", "L": "grayscale", "LA": "grayscale with alpha", "P": "palette", "PA": "palette with alpha",
              "RGB": "RGB", "RGBA": "RGBA", "CMYK": "CMYK", "YCbCr": "YCbCr", "I;16": "16-bit grayscale",
              "I;16L": "16-bit grayscale", "I;16B": "16-bit grayscale", "I;16N": "16-bit grayscale",
              "I": "32-bit grayscale", "F": "float grayscale"}


def _pillow():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("reading a folder of images needs Pillow: pip install pillow "
                          "(or, in volnet's folder, pip install '.[images]')") from error
    return Image


def _to_eight_bits(Image, image):
    """A 16-bit (or 32-bit integer) grayscale image as 8-bit ``"L"``, 0-65535 scaled to 0-255.

    Pillow's own ``convert("L")`` clips such images at 255 instead of scaling
    them, which turns almost every pixel white.
    """
    values = np.clip(np.asarray(image), 0, 65535).astype(np.int32)
    return Image.fromarray(((values + 128) // 257).astype(np.uint8), mode="L")


def _open_image(Image, path, mode):
    """``path`` converted to Pillow ``mode``, and what was converted ("" when nothing was).

    Only :data:`DECODERS` are tried. Any decoder error (Pillow raises ``SyntaxError``, ``struct.error``,
    ``EOFError``... for damaged files) is a :class:`DataError` naming the file.
    """
    try:
        with Image.open(path, formats=DECODERS) as opened:
            source = opened.mode
            image = _to_eight_bits(Image, opened) if source in WIDE_MODES else opened
            image = image.convert(mode)
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image: its bytes are not PNG or JPEG, the only formats volnet "
                        "reads") from None
    except FileNotFoundError as error:
        raise DataError(f"{path}: no such file ({error.strerror})") from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 -- a decoder's error of any kind means a damaged file
        raise DataError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None
    if source == mode:
        return image, ""
    target = "8 bits" if source in WIDE_MODES and mode == "L" else MODE_NAMES[mode]
    return image, f"converted {MODE_NAMES.get(source, source)} to {target}"


def _require_room(count: int, H: int, W: int, D: int, what: str, also: str = "") -> None:
    """Refuse ``count`` images of ``H x W x D`` before allocating them, naming the ``--size`` to lower.

    The bytes: the uint8 stack and the float32 copy it becomes (``5 N H W D``),
    plus one working image: Pillow's (4 bytes a pixel for RGB) and its NumPy copy.
    """
    needed = 5 * count * H * W * D + H * W * (4 + D)
    require_memory(needed, f"{what} as {count} volumes of {H}x{W}x{D} (H x W x D)",
                   "use a smaller --size (size=(H, W))" + also)


def read_image_with_note(path, size, grayscale: bool = False) -> tuple[np.ndarray, str]:
    """:func:`read_image`, and a note saying what was changed to fit ``size`` and the depth.

    The note is "" when the file already was ``size`` and of the right mode,
    else e.g. ``"converted RGBA to grayscale, resized 480x640 to 28x28 (H x W)"``.
    16-bit images are scaled to 8 bits (0-65535 to 0-255), not clipped.

    Raises:
        DataError: the file is not a readable image.
        ResourceError: ``size`` is too large for this machine's memory.
    """
    Image = _pillow()
    H, W = pair(size, "size")
    mode, D = ("L", 1) if grayscale else ("RGB", 3)
    _require_room(1, H, W, D, f"resizing {path}")
    image, note = _open_image(Image, path, mode)
    notes = [note] if note else []
    if (image.height, image.width) != (H, W):
        notes.append(f"resized {image.height}x{image.width} to {H}x{W} (H x W)")
        image = image.resize((W, H), Image.Resampling.BILINEAR)
    return bytes_to_unit(np.asarray(image, dtype=np.uint8).reshape(H, W, D)), ", ".join(notes)


def read_image(path, size, grayscale: bool = False) -> np.ndarray:
    """One image file as an ``(H, W, D)`` float32 volume in [0, 1], resized to ``size=(H, W)``.

    :func:`read_image_with_note` also says what it converted.
    """
    return read_image_with_note(path, size, grayscale)[0]


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


def read_pixels(Image, path, mode: str, target: tuple[int, int], resize: bool, first=None) -> np.ndarray:
    """``path`` as ``(H, W, D)`` uint8 of Pillow ``mode``; resized to ``target`` when ``resize``, else it must be it.

    Raises:
        DataError: the file is not a readable image, or (without ``resize``) is not ``target``,
            the size of ``first``.
    """
    image, _ = _open_image(Image, path, mode)
    if (image.height, image.width) != target:
        if not resize:
            raise DataError(f"{path} is {image.height}x{image.width} but {first} is {target[0]}x{target[1]} "
                            f"(H x W); pass --size HxW (size=(H, W)) to resize every image")
        image = image.resize((target[1], target[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).reshape(*target, len(mode))  # D = 1 for "L", 3 for "RGB"


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
    Image = _pillow()
    mode, depth = ("L", 1) if grayscale else ("RGB", 3)
    first = files[0][0]
    if target is None:
        image, _ = _open_image(Image, first, mode)
        target = (image.height, image.width)
    if stream:
        from .stream import FolderImages

        paths = [path for path, _ in files]
        return Dataset(FolderImages(paths, target, grayscale, resize=size is not None, workers=workers), labels,
                       classes)
    usable = usable_memory()
    one_fits = usable is None or 5 * target[0] * target[1] * depth * STREAM_HINT_BATCH <= usable
    _require_room(len(files), *target, depth, f"loading {folder}",
                  ", or --stream to read the images from disk as batches need them (stream=True)" if one_fits else "")
    images = np.empty((len(files), *target, depth), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        images[i] = read_pixels(Image, path, mode, target, size is not None, first)
    return Dataset(bytes_to_unit(images), labels, classes)
