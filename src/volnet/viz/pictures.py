"""Arrays into pictures: colour maps, grids of depth slices and filters, upscaling, PNG bytes.

Every function returns a NumPy array (``uint8`` RGB ``(H, W, 3)`` or grey
``(H, W)``) or bytes; nothing is printed or shown. :func:`save_png` writes one;
:class:`Picture` wraps one for a notebook to show inline.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np

# Colour scales as a few anchor colours, interpolated linearly (0 -> first, 1 -> last).
COLORMAPS = {
    # dark blue -> teal -> yellow, a perceptually ordered scale for magnitudes (viridis-like)
    "heat": np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]) / 255.0,
    # blue -> white -> red for signed values (negative, zero, positive)
    "signed": np.array([[33, 102, 172], [247, 247, 247], [178, 24, 43]]) / 255.0,
    "grey": np.array([[0, 0, 0], [255, 255, 255]]) / 255.0,
}


def colorize(values: np.ndarray, cmap: str = "heat", low: float | None = None, high: float | None = None) -> np.ndarray:
    """RGB ``uint8`` picture of a 2-D array through a colour scale.

    ``low`` and ``high`` bound the scale (default: the array's min and max);
    the ``"signed"`` scale centres zero (white) between -m and m, m the
    largest magnitude, unless bounds are given.
    """
    values = np.asarray(values, dtype=np.float64)
    if cmap == "signed" and low is None and high is None:
        m = float(np.abs(values).max()) if values.size else 0.0
        low, high = -m, m
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    level = (values - low) / (high - low) if high > low else np.full(values.shape, 0.5)
    anchors = COLORMAPS[cmap]
    position = np.clip(level, 0, 1) * (len(anchors) - 1)
    below = np.minimum(position.astype(int), len(anchors) - 2)
    t = (position - below)[..., None]
    rgb = anchors[below] * (1 - t) + anchors[below + 1] * t
    return (rgb * 255 + 0.5).astype(np.uint8)


def colorbar(cmap: str = "heat", width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal strip of the colour scale, low on the left."""
    return colorize(np.tile(np.linspace(0, 1, width), (height, 1)), cmap, 0.0, 1.0)


def upscale(picture: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer ``factor`` (pixels stay sharp squares)."""
    factor = max(1, int(factor))
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def upscale_to(picture: np.ndarray, size: int) -> np.ndarray:
    """Enlarge (never shrink) so that the longer side is at least ``size`` pixels."""
    return upscale(picture, max(1, size // max(picture.shape[:2])))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """``uint8`` RGB of an image ``(H, W, D)`` with values in [0, 1] (D = 1 grey, D = 3 colour)."""
    image = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    if image.ndim == 2:
        image = image[..., None]
    rgb = np.repeat(image[..., :1], 3, axis=2) if image.shape[2] != 3 else image
    return (rgb * 255 + 0.5).astype(np.uint8)


def blend(image: np.ndarray, values: np.ndarray, cmap: str = "heat", alpha: float = 0.5, *,
          fade: bool = False) -> np.ndarray:
    """An image ``(H, W, D)`` in [0, 1] with the map ``values`` (h, w) coloured over it.

    The map is stretched to the image size (each value covering its block of
    pixels) and coloured as :func:`colorize` does (``"signed"``: white at zero,
    -m to m). ``fade``: each pixel's opacity is ``alpha * |value| / m``, so
    where the map is zero the image shows as it is.
    """
    H, W = image.shape[:2]
    h, w = values.shape
    rows = np.minimum(np.arange(H) * h // H, h - 1)
    cols = np.minimum(np.arange(W) * w // W, w - 1)
    stretched = np.asarray(values, dtype=np.float64)[rows][:, cols]
    heat = colorize(stretched, cmap).astype(np.float64)
    if fade:
        m = float(np.abs(stretched).max()) or 1.0
        alpha = alpha * (np.abs(stretched) / m)[..., None]
    return ((1 - alpha) * to_rgb(image) + alpha * heat + 0.5).astype(np.uint8)


def grid(tiles: np.ndarray, columns: int | None = None, gap: int = 1, fill: int = 255) -> np.ndarray:
    """Tiles ``(n, h, w)`` or ``(n, h, w, 3)`` laid out row by row with ``gap`` pixels of ``fill`` between."""
    n, h, w = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    shape = (rows * (h + gap) - gap, columns * (w + gap) - gap) + tiles.shape[3:]
    out = np.full(shape, fill, dtype=tiles.dtype)
    for i in range(n):
        r, c = divmod(i, columns)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tiles[i]
    return out


def activation_grid(volume: np.ndarray, max_slices: int = 64, cmap: str = "grey") -> np.ndarray:
    """RGB grid of a volume's depth slices ``volume[:, :, d]`` (first ``max_slices``), one scale for all.

    A vector (an FC layer's output) becomes one row of cells.
    """
    volume = np.asarray(volume, dtype=np.float64)
    if volume.ndim == 1:
        return colorize(volume[None, :], cmap)
    slices = np.moveaxis(volume[:, :, :max_slices], 2, 0)
    return grid(colorize(slices, cmap))


def filter_grid(weights: np.ndarray, max_filters: int = 64, max_depth: int = 16) -> np.ndarray:
    """RGB picture of CONV filters ``(F, F, D1, K)``.

    With D1 = 3 (a first layer reading colour images) each filter is one
    colour tile; otherwise a grid with one row per filter and one grey tile
    per input depth slice (first ``max_depth``), all on one signed scale.
    """
    F1, F2, D1, K = weights.shape
    w = np.asarray(weights[..., :max_filters], dtype=np.float64)
    if D1 == 3:
        m = float(np.abs(w).max()) or 1.0
        tiles = np.moveaxis(w / (2 * m) + 0.5, 3, 0)  # (K, F, F, 3), zero at mid-grey
        return grid((tiles * 255 + 0.5).astype(np.uint8), fill=255)
    if D1 == 1:  # one grey tile per filter
        return grid(colorize(np.moveaxis(w[:, :, 0, :], 2, 0), "signed", -np.abs(w).max(), np.abs(w).max()))
    depth = min(D1, max_depth)
    tiles = np.transpose(w[:, :, :depth, :], (3, 2, 0, 1)).reshape(-1, F1, F2)  # filter-major, then depth
    return grid(colorize(tiles, "signed", -np.abs(w).max(), np.abs(w).max()), columns=depth)


def png_bytes(picture: np.ndarray) -> bytes:
    """PNG file contents of a ``uint8`` picture (grey or RGB)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class Picture:
    """A picture that a notebook shows inline as a PNG, enlarged ``scale`` times (each pixel a block).

    >>> Picture(filter_grid(np.ones((5, 5, 1, 4))), scale=4).array.shape
    (44, 44, 3)
    """

    def __init__(self, picture: np.ndarray, scale: int = 1):
        self.array = upscale(np.asarray(picture), scale) if scale > 1 else np.asarray(picture)

    def _repr_png_(self) -> bytes:
        return png_bytes(self.array)


def data_uri(picture: np.ndarray) -> str:
    """The picture as a ``data:image/png;base64,...`` address, for a page that carries its images."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def save_png(picture: np.ndarray, path) -> Path:
    """Write a ``uint8`` picture as a PNG file (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(picture))
    return path
