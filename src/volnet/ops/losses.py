"""The two classifier losses: softmax cross-entropy and multiclass SVM (hinge).

Both take class scores ``(N, C)`` and integer labels ``(N,)`` and return
``(loss, dscores)``: the mean loss over the batch and its gradient with
respect to the scores. With ``weights`` ``(N,)`` (an image's class weight,
``--class-weight``) the mean is weighted, ``sum_i w_i L_i / sum_i w_i``, as
PyTorch's ``cross_entropy(weight=...)`` defines it.
"""

from __future__ import annotations

import numpy as np

from ..shapes import ShapeError


def check_scores_and_labels(scores, labels):
    """Validate a loss's inputs; returns labels as an integer array."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ShapeError(f"loss: scores must be (N, classes), got shape {scores.shape}")
    labels = np.asarray(labels)
    if labels.shape != (scores.shape[0],):
        raise ShapeError(f"loss: expected {scores.shape[0]} labels (one per score row), got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"loss: labels must be integers (class indices), got dtype {labels.dtype}")
    C = scores.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= C):
        bad = labels[(labels < 0) | (labels >= C)][0]
        raise ValueError(f"loss: label {bad} is out of range for {C} classes (valid: 0..{C - 1})")
    if not np.all(np.isfinite(scores)):
        rows = np.unique(np.nonzero(~np.isfinite(scores))[0])
        raise ValueError(
            f"loss: scores contain NaN or Inf (in {rows.size} of {scores.shape[0]} rows, first row {rows[0]}); "
            "the input held NaN/Inf or training diverged: check the data and lower the learning rate"
        )
    return labels


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Class probabilities ``exp(s_j) / sum_k exp(s_k)`` along ``axis`` (shifted by the maximum: no overflow)."""
    shifted = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _weighted(weights, N: int):
    """Per-image weights over their sum, ``(N, 1)``; a ValueError for weights that are not positive."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (N,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"loss: weights must be {N} finite numbers > 0 (one per image), got shape {w.shape}")
    return (w / w.sum())[:, None]


def softmax_cross_entropy(scores, labels, weights=None):
    """Mean of ``-log(softmax(scores)[label])``; gradient ``(softmax - onehot)/N``.

    With ``weights`` ``(N,)``: ``sum_i w_i L_i / sum_i w_i``, gradient ``(softmax - onehot) w_i / sum w``.
    """
    labels = check_scores_and_labels(scores, labels)
    N = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)  # exp cannot overflow
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    dscores = np.exp(log_probs)
    dscores[np.arange(N), labels] -= 1
    if weights is not None:
        share = _weighted(weights, N)
        return float(-(share[:, 0] * log_probs[np.arange(N), labels]).sum()), (dscores * share).astype(
            scores.dtype, copy=False)
    loss = -log_probs[np.arange(N), labels].mean()
    return float(loss), dscores / N


def svm_hinge(scores, labels, margin=1.0, weights=None):
    """Multiclass SVM: mean over the batch of ``sum_{j != y} max(0, s_j - s_y + margin)``.

    This is the CS231n form. PyTorch's ``multi_margin_loss`` also divides by
    the number of classes C. ``weights`` ``(N,)``: the weighted mean, as for the softmax.
    """
    labels = check_scores_and_labels(scores, labels)
    N = scores.shape[0]
    correct = scores[np.arange(N), labels][:, None]
    margins = np.maximum(0, scores - correct + margin)
    margins[np.arange(N), labels] = 0
    active = (margins > 0).astype(scores.dtype)
    active[np.arange(N), labels] = -active.sum(axis=1)
    if weights is not None:
        share = _weighted(weights, N)
        return float((share[:, 0] * margins.sum(axis=1)).sum()), (active * share).astype(scores.dtype, copy=False)
    return float(margins.sum() / N), active / N


LOSSES = {"softmax": softmax_cross_entropy, "svm": svm_hinge}
