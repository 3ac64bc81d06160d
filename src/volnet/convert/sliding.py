"""Sliding-window evaluation: the converted network run once over a larger image.

The notes: "resize an image to make it bigger, use a converted ConvNet to
evaluate class scores at many spatial positions and then average the class
scores". :func:`sliding_size` picks the enlarged size that the network
slides over evenly; :func:`slide` returns the score map and its average.
:func:`sliding_memory` estimates, from shapes alone, what that costs, and
:func:`require_sliding_memory` refuses a scale the machine cannot hold
before any image is read.
"""

from __future__ import annotations

import math

import numpy as np

from .. import resources
from .fc_conv import fc_to_conv, score_map_geometry

IMAGE_BYTES = 4  # read_image gives float32 volumes
READ_BYTES_PER_VALUE = 10  # one image's decoding: PIL's resized copy, its uint8 array, its float32 conversion
HEATMAP_BYTES_PER_PIXEL = 64  # heatmap_overlay's float temporaries, measured with tracemalloc


def sliding_size(net, scale: float = 1.5) -> tuple[int, int]:
    """The image size nearest ``scale`` times the input that the converted net tiles exactly.

    Valid sizes are ``crop + k*stride`` (see :func:`score_map_geometry`).
    """
    if not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1 (the image is enlarged, never shrunk), got {scale}")
    (ch, cw), (sh, sw) = score_map_geometry(net)
    return (ch + round((scale - 1) * ch / sh) * sh, cw + round((scale - 1) * cw / sw) * sw)


def slide(net, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(score_map, mean_scores)`` for a batch of enlarged images ``(N, H', W', D)``.

    ``score_map`` is ``(N, h, w, classes)``: the original network's class
    scores for the crop at every position, computed in one forward pass of
    the fully-convolutional copy; ``mean_scores`` ``(N, classes)`` averages
    them over positions.
    """
    converted = fc_to_conv(net, images.shape[1:])
    score_map = converted.forward(images, train=False)
    return score_map, score_map.mean(axis=(1, 2))


def sliding_memory(net, size, images: int = 1, *, heatmap: bool = False) -> int:
    """Bytes the peak of reading ``images`` images at ``size`` ``(H', W')`` and sliding ``net`` over them reaches.

    From shapes alone, nothing allocated (as ``volnet predict --slide`` does it)::

        volume      images * H' * W' * D * 4   the images, float32
        reading     2 volumes + one image's decoding (the list of images and their stack)
        normalising 3 volumes (the images, ``x - mean`` and its quotient)
        sliding     1 volume + the converted net's inference memory at batch ``images``
                    (:class:`volnet.analysis.Memory`: its input, the largest layer's input
                    and output, CONV workspace) + the original net's weights
        drawing     2 volumes + 64 bytes per pixel (``heatmap=True``)

    and the largest of these is the answer.

    >>> from volnet import build
    >>> net = build("INPUT[28x28x1] -> CONV3-4/P1 -> RELU -> POOL2 -> FC10", allocate=False)
    >>> sliding_memory(net, (56, 56)) > sliding_memory(net, (28, 28))
    True
    """
    return _sliding_memory(net, fc_to_conv(net), size, images, heatmap)


def _sliding_memory(net, converted, size, images: int, heatmap: bool) -> int:
    """:func:`sliding_memory` with the converted net (at the original size) made once by the caller."""
    from ..analysis import analyze

    H, W = size
    D = net.input_shape[2]
    volume = images * H * W * D * IMAGE_BYTES
    reading = 2 * volume + H * W * D * READ_BYTES_PER_VALUE
    normalising = 3 * volume
    inference = analyze(converted, input_shape=(H, W, D), batch=images, optimizer=None).memory("inference")
    sliding = volume + inference.total + net.num_params * net.dtype.itemsize
    drawing = 2 * volume + HEATMAP_BYTES_PER_PIXEL * H * W if heatmap else 0
    return max(reading, normalising, sliding, drawing)


def require_sliding_memory(net, scale: float, images: int = 1, *, heatmap: bool = False) -> tuple[int, int]:
    """:func:`sliding_size` for ``scale``, after checking that sliding there fits in memory.

    Raises:
        ResourceError: "sliding the 28x28 net over N images of H'xW' needs X,
            the machine has Y available; lower --scale (the largest that fits
            is about S)", before any image is read.
    """
    size = sliding_size(net, scale)
    converted = fc_to_conv(net)
    needed = _sliding_memory(net, converted, size, images, heatmap)
    usable = resources.usable_memory()
    if usable is None or needed <= usable:
        return size
    (ch, cw), _ = score_map_geometry(net)
    fits = _largest_fitting_size(net, converted, size, images, heatmap, usable)
    plural = "s" if images != 1 else ""
    if fits is not None:
        fix = f"lower --scale (the largest that fits is about {fits[0] / ch:.4g})"
        if images > 1:
            fix += ", or pass fewer images at once"
    elif images > 1:
        fix = "pass fewer images at once"
    else:
        fix = "this network cannot slide over even its own input size here; predict without --slide"
    H, W = (f"{n:.3g}" if n >= 10**12 else str(n) for n in size)
    resources.require_memory(needed, f"sliding the {ch}x{cw} net over {images} image{plural} of {H}x{W} "
                             f"(--scale {scale:g})", fix)
    return size


def _largest_fitting_size(net, converted, size, images, heatmap, usable) -> tuple[int, int] | None:
    """The largest size ``crop + k*stride`` no larger than ``size`` whose :func:`sliding_memory` fits."""
    (ch, cw), (sh, sw) = score_map_geometry(net)
    steps = max((size[0] - ch) // sh, (size[1] - cw) // sw)

    def at(k):
        return (ch + min(k, (size[0] - ch) // sh) * sh, cw + min(k, (size[1] - cw) // sw) * sw)

    def fits(k):
        return _sliding_memory(net, converted, at(k), images, heatmap) <= usable

    if not fits(0):
        return None
    low, high = 0, 1
    while high < steps and fits(high):
        low, high = high, 2 * high
    high = min(high, steps)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return at(low)
