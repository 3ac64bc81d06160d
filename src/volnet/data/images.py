"""Image files decoded safely with Pillow: PNG and JPEG only, any decoder error one line naming the file.

Whatever a file's name or bytes claim, Pillow may use only :data:`DECODERS`: an untrusted file must never
reach another decoder (Pillow hands EPS to Ghostscript, a PostScript interpreter). 16-bit grayscale is
scaled to 8 bits, not clipped. Pillow is an optional dependency (``pip install pillow``, or the ``images``
extra). Used by folder data sets (:mod:`volnet.data.folder`, :mod:`volnet.data.stream`), ``volnet predict``
and the report page.
"""

from __future__ import annotations

import numpy as np

from ..resources import require_memory
from ..shapes import pair
from .bundled import bytes_to_unit
from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The only decoders Pillow may use, whatever a file's name or bytes claim: an untrusted file must never reach
# another one (Pillow hands EPS to Ghostscript, a PostScript interpreter).
DECODERS = ("PNG", "JPEG")
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # integer grayscale wider than 8 bits, read as 16-bit
MODE_NAMES = {"1": "1-bit", "L": "grayscale", "LA": "grayscale with alpha", "P": "palette", "PA": "palette with alpha",
              "RGB": "RGB", "RGBA": "RGBA", "CMYK": "CMYK", "YCbCr": "YCbCr", "I;16": "16-bit grayscale",
              "I;16L": "16-bit grayscale", "I;16B": "16-bit grayscale", "I;16N": "16-bit grayscale",
              "I": "32-bit grayscale", "F": "float grayscale"}


def pillow():
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


def open_image(Image, path, mode):
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


def require_room(count: int, H: int, W: int, D: int, what: str, also: str = "") -> None:
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
    Image = pillow()
    H, W = pair(size, "size")
    mode, D = ("L", 1) if grayscale else ("RGB", 3)
    require_room(1, H, W, D, f"resizing {path}")
    image, note = open_image(Image, path, mode)
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


def read_pixels(Image, path, mode: str, target: tuple[int, int], resize: bool, first=None) -> np.ndarray:
    """``path`` as ``(H, W, D)`` uint8 of Pillow ``mode``; resized to ``target`` when ``resize``, else it must be it.

    Raises:
        DataError: the file is not a readable image, or (without ``resize``) is not ``target``,
            the size of ``first``.
    """
    image, _ = open_image(Image, path, mode)
    if (image.height, image.width) != target:
        if not resize:
            raise DataError(f"{path} is {image.height}x{image.width} but {first} is {target[0]}x{target[1]} "
                            f"(H x W); pass --size HxW (size=(H, W)) to resize every image")
        image = image.resize((target[1], target[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).reshape(*target, len(mode))  # D = 1 for "L", 3 for "RGB"
