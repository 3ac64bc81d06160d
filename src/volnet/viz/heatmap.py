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
