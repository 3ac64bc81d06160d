"""Sliding-window evaluation: the converted network run once over a larger image.

The notes: "resize an image to make it bigger, use a converted ConvNet to
evaluate class scores at many spatial positions and then average the class
scores". :func:`sliding_size` picks the enlarged size that the network
slides over evenly; :func:`slide` returns the score map and its average.
"""

from __future__ import annotations

import numpy as np

from .fc_conv import fc_to_conv, score_map_geometry


def sliding_size(net, scale: float = 1.5) -> tuple[int, int]:
    """The image size nearest ``scale`` times the input that the converted net tiles exactly.

    Valid sizes are ``crop + k*stride`` (see :func:`score_map_geometry`).
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1 (the image is enlarged, never shrunk), got {scale}")
    (ch, cw), (sh, sw) = score_map_geometry(net)
    return (ch + round((scale - 1) * ch / sh) * sh, cw + round((scale - 1) * cw / sw) * sw)


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


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
