"""One weight per class for the loss's mean, ``sum_i w[y_i] L_i / sum_i w[y_i]`` (PyTorch's
``cross_entropy(weight=...)``, Keras' ``class_weight``): checked once when a trainer is built, or computed
"balanced" from the labels."""

from __future__ import annotations

import numpy as np


def checked_class_weight(class_weight, classes: int) -> np.ndarray | None:
    """``class_weight`` as float64 ``(classes,)`` (None stays None).

    Raises:
        ValueError: not ``classes`` finite numbers above 0.
    """
    if class_weight is None:
        return None
    weights = np.asarray(class_weight, dtype=np.float64)
    if weights.shape != (classes,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(f"class_weight must be {classes} finite numbers > 0, one per class, got "
                         f"{weights.tolist() if weights.size <= 12 else weights.shape}")
    return weights


def balanced_class_weight(labels, classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weights, ``n / (C * n_c)``: each class weighs as much in the loss as the others.

    Raises:
        ValueError: a class without images (its weight would be infinite).
    """
    counts = np.bincount(np.asarray(labels), minlength=classes)
    if not counts.all():
        raise ValueError(f"class {int(np.argmin(counts))} has no training images, so no balanced weight")
    return len(labels) / (classes * counts)
