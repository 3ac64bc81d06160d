"""A class-score map drawn over the image it came from."""

from __future__ import annotations

import numpy as np


def heatmap_overlay(image: np.ndarray, scores: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB uint8 picture of ``image`` (H, W, D in [0, 1]) with ``scores`` (h, w) painted over it.

    Scores are scaled to [0, 1] over the map, stretched to the image size
    (each score covers its block of pixels), and blended in as red:
    brighter red where the class scores higher.
    """
    if image.ndim != 3 or scores.ndim != 2:
        raise ValueError(f"expected an (H, W, D) image and an (h, w) score map, got {image.shape} and {scores.shape}")
    H, W = image.shape[:2]
    h, w = scores.shape
    low, high = float(scores.min()), float(scores.max())
    level = (scores - low) / (high - low) if high > low else np.zeros_like(scores)
    rows = np.minimum(np.arange(H) * h // H, h - 1)
    cols = np.minimum(np.arange(W) * w // W, w - 1)
    heat = level[rows][:, cols]
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
    red = np.stack([heat, np.zeros_like(heat), np.zeros_like(heat)], axis=2)
    blended = (1 - alpha) * rgb + alpha * red
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)


def heatmap_with_legend(image: np.ndarray, scores: np.ndarray, label: str = "score", size: int = 256,
                        alpha: float = 0.55) -> np.ndarray:
    """RGB uint8 picture for ``volnet predict --heatmap``: the score map over the image, enlarged.

    The image (H, W, D in [0, 1]) is enlarged by an integer factor (sharp pixels) until its
    longer side is at least ``size``; the map ``scores`` (h, w) is coloured on the ``heat``
    scale of :mod:`volnet.viz.pictures` over its own min and max; under it a legend strip
    shows the scale with ``label`` and the two end values.
    """
    from PIL import Image, ImageDraw

    from .pictures import blend, colorbar, upscale_to

    if image.ndim != 3 or scores.ndim != 2:
        raise ValueError(f"expected an (H, W, D) image and an (h, w) score map, got {image.shape} and {scores.shape}")
    picture = upscale_to(blend(image, scores, "heat", alpha), size)
    H, W = picture.shape[:2]
    legend = np.full((34, W, 3), 255, dtype=np.uint8)
    bar_width = max(W - 16, 8)
    legend[4:14, 8: 8 + bar_width] = colorbar("heat", bar_width, 10)
    canvas = Image.fromarray(np.concatenate([picture, legend]))
    draw = ImageDraw.Draw(canvas)
    low, high = f"{float(scores.min()):.3g}", f"{float(scores.max()):.3g}"
    draw.text((8, H + 17), low, fill=(0, 0, 0))
    draw.text((W - 8 - 6 * len(high), H + 17), high, fill=(0, 0, 0))
    draw.text((W // 2 - 3 * len(label), H + 17), label, fill=(0, 0, 0))
    return np.asarray(canvas)
