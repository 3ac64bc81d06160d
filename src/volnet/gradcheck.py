"""Numerical gradients by centred differences, to check every backward pass.

``numerical_gradient(f, x)`` perturbs each entry of ``x`` by +-h and returns
``(f(x+h) - f(x-h)) / 2h``; compare it with an analytic gradient through
:func:`relative_error`. Use float64: in float32 the rounding error of f
swamps the difference for any useful h.
"""

from __future__ import annotations

import numpy as np


def numerical_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Gradient of the scalar function ``f()`` w.r.t. the array ``x``, modified in place and restored."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + h
        plus = f()
        flat[i] = original - h
        minus = f()
        flat[i] = original
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / (||a|| + ||b||)``, the scale-free distance used by gradient checks.

    Norms rather than entry by entry: an entry whose true gradient is ~0
    would otherwise turn harmless rounding into a huge "relative" error.
    """
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0
