"""Regularisation kernels: batch normalisation and (inverted) dropout.

BatchNorm normalises every depth slice with statistics taken over the batch.
For a batch of volumes ``(N, H, W, D)`` a slice holds the ``m = N*H*W``
activations of one depth column across all positions and volumes (spatial
BatchNorm, as in ConvNets); for a batch of vectors ``(N, K)`` it holds the
``m = N`` values of one neuron. In general: every axis but the last. Per slice::

    mu    = mean(x)                       var = mean((x - mu)^2)   (biased: / m)
    x_hat = (x - mu) / sqrt(var + eps)    out = gamma * x_hat + beta

Training normalises with the batch's own statistics
(:func:`batchnorm_train_forward`, which also hands them back so that the layer
can keep running averages); inference with fixed ones
(:func:`batchnorm_inference_forward`), where BatchNorm is a per-slice affine map.

Dropout (inverted): keep each activation with probability ``1 - p`` and scale
the kept ones by ``1 / (1 - p)``, so every activation keeps its expected value
and inference is the identity, with nothing to rescale.

Every kernel works in the input's float dtype (float32 stays float32).
BatchNorm of float32 and float64 values runs compiled (:mod:`volnet.ops.norm_kernels`,
:func:`batchnorm_plan`), split over the cores, where Numba is on; the NumPy
expressions below are its reference and the path without Numba.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..shapes import ShapeError
from . import jit, norm_kernels, threads
from .workspace import ELIDE_BYTES, BackwardWorkspace, ForwardWorkspace, float_dtype


def _slice_axes(x: np.ndarray) -> tuple[int, ...]:
    """The axes BatchNorm averages over: all but the depth (last) axis."""
    return tuple(range(x.ndim - 1))


def _check_depth(x, gamma, beta):
    D = x.shape[-1]
    if gamma.shape != (D,) or beta.shape != (D,):
        raise ShapeError(f"batchnorm: input depth is {D} (shape {x.shape}) but gamma is {gamma.shape} "
                         f"and beta {beta.shape}; both must be ({D},)")


def batchnorm_plan(dtype) -> str:
    """Which kernels normalise values of ``dtype``: ``"compiled"`` (:mod:`volnet.ops.norm_kernels`: float32
    and float64, Numba on) or ``"numpy"`` (the expressions in this module)."""
    return "compiled" if jit.ENABLED and np.dtype(dtype) in (np.float32, np.float64) else "numpy"


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` as contiguous ``(m, D)`` rows, the compiled kernels' layout (a copy only where a is strided)."""
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def _workers(x: np.ndarray, workers) -> tuple[int, bool]:
    """Threads for a pass over ``x``'s rows, and whether BLAS is held (:class:`volnet.ops.threads.Workers`)."""
    workers = threads.or_alone(workers)
    return workers.for_bytes(x.nbytes, x.size // x.shape[-1]), workers.blas_held


@dataclass(frozen=True)
class BatchNormCache:
    """What :func:`batchnorm_backward` needs from a training forward pass."""

    x_hat: np.ndarray    # the normalised input, shape of x
    inv_std: np.ndarray  # 1 / sqrt(var + eps) per slice, shape (D,)
    gamma: np.ndarray    # the scale, shape (D,)


def batchnorm_train_forward(x, gamma, beta, eps: float, *, workers=None):
    """BatchNorm with the batch's statistics; returns ``(out, cache, batch_mean, batch_var)``.

    ``batch_var`` is the biased variance (divided by m) that normalised the
    batch; a running average of the unbiased one is ``batch_var * m / (m - 1)``
    with ``m = x.size // x.shape[-1]``. ``workers``: a :class:`volnet.ops.threads.Workers`, or None.
    """
    _check_depth(x, gamma, beta)
    if batchnorm_plan(x.dtype) == "compiled":
        count, blas_held = _workers(x, workers)
        out, x_hat, mean, var = norm_kernels.train_forward(_rows(x), gamma, beta, eps, count, blas_held=blas_held)
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        cache = BatchNormCache(x_hat.reshape(x.shape), inv_std, gamma)
        return out.reshape(x.shape), cache, mean.astype(x.dtype), var.astype(x.dtype)
    axes = _slice_axes(x)
    mean = x.mean(axis=axes)
    x_hat = x - mean
    var = np.mean(x_hat * x_hat, axis=axes)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat *= inv_std
    out = gamma * x_hat + beta
    return out, BatchNormCache(x_hat, inv_std, gamma), mean, var


def batchnorm_backward(dout, cache: BatchNormCache, input_grad: bool = True, *, workers=None):
    """Backward of :func:`batchnorm_train_forward`: ``(dx, dgamma, dbeta)`` (dx None if not ``input_grad``).

    The compact closed form, with sums over the m values of each slice::

        dbeta  = sum(dout)        dgamma = sum(dout * x_hat)
        dx     = gamma / (m * sqrt(var + eps)) * (m * dout - dbeta - x_hat * dgamma)

    (dx is dout's part through x_hat minus its projections onto the two
    directions the batch statistics remove: the mean and x_hat itself.)
    """
    if batchnorm_plan(dout.dtype) == "compiled" and cache.x_hat.dtype == dout.dtype:
        count, blas_held = _workers(dout, workers)
        dx, dgamma, dbeta = norm_kernels.backward(_rows(dout), _rows(cache.x_hat), cache.gamma, cache.inv_std,
                                                  input_grad, count, blas_held=blas_held)
        return (None if dx is None else dx.reshape(dout.shape)), dgamma, dbeta
    axes = _slice_axes(dout)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * cache.x_hat).sum(axis=axes)
    if not input_grad:
        return None, dgamma, dbeta
    m = dout.size // dout.shape[-1]
    dx = (cache.gamma * cache.inv_std / m) * (m * dout - dbeta - cache.x_hat * dgamma)
    return dx, dgamma, dbeta


def batchnorm_inference_forward(x, gamma, beta, mean, var, eps: float, *, workers=None):
    """BatchNorm with fixed statistics (the running averages): ``gamma * (x - mean) / sqrt(var + eps) + beta``.

    Computed as one per-slice affine map ``x * scale + shift``, the same fold
    that merges BatchNorm into the preceding CONV for deployment. Returns only
    ``out``: nothing is trained through the fixed statistics.
    """
    _check_depth(x, gamma, beta)
    return affine_forward(x, *inference_affine(gamma, beta, mean, var, eps), workers=workers)


def affine_forward(x, scale, shift, *, workers=None, relu: bool = False, in_place: bool = False):
    """``x * scale + shift`` per depth slice, rectified where ``relu``, one pass: compiled (its rows split over
    ``workers``) where :func:`batchnorm_plan` says so. A new array, or ``in_place`` x's own (a contiguous x)."""
    if batchnorm_plan(x.dtype) == "compiled":
        count, blas_held = _workers(x, workers)
        rows = _rows(x)
        return norm_kernels.affine(rows, scale, shift, count, blas_held=blas_held, relu=relu,
                                   out=rows if in_place else None).reshape(x.shape)
    out = np.multiply(x, scale.astype(x.dtype, copy=False), out=x if in_place else None)
    out += shift.astype(x.dtype, copy=False)
    return np.maximum(out, 0, out=out) if relu else out


def inference_affine(gamma, beta, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)``: BatchNorm with fixed statistics as the per-slice map ``x * scale + shift``."""
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


@dataclass(frozen=True)
class FixedStatsCache:
    """What :func:`batchnorm_fixed_backward` needs from :func:`batchnorm_fixed_forward`."""

    x: np.ndarray      # the input
    gamma: np.ndarray  # the scale, shape (D,)
    mean: np.ndarray   # the fixed statistics, shape (D,)
    var: np.ndarray
    eps: float


def batchnorm_fixed_forward(x, gamma, beta, mean, var, eps: float):
    """:func:`batchnorm_inference_forward` (the same numbers) that also returns a cache, ``(out, cache)``, for a
    backward pass through the fixed statistics (saliency and Grad-CAM explain the scores inference gives)."""
    return batchnorm_inference_forward(x, gamma, beta, mean, var, eps), FixedStatsCache(x, gamma, mean, var, eps)


def batchnorm_fixed_backward(dout, cache: FixedStatsCache, input_grad: bool = True):
    """Backward of :func:`batchnorm_fixed_forward`, a per-slice affine map: ``(dx, dgamma, dbeta)``::

        dx = dout * gamma / sqrt(var + eps)    dgamma = sum(dout * x_hat)    dbeta = sum(dout)

    with ``x_hat = (x - mean) / sqrt(var + eps)``.
    """
    axes = _slice_axes(dout)
    std = np.sqrt(cache.var + cache.eps)
    dx = dout * (cache.gamma / std) if input_grad else None
    x_hat = (cache.x - cache.mean) / std
    return dx, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def check_dropout_probability(p) -> float:
    """``p`` as a float, or ValueError unless ``0 <= p < 1`` (p = 1 would drop everything)."""
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"dropout: p (probability of dropping) must be a number in [0, 1), got {p!r}") from None
    if not 0.0 <= p < 1.0:  # also rejects NaN
        raise ValueError(f"dropout: p (probability of dropping) must be in [0, 1), got {p}")
    return p


def dropout_forward(x, p: float, rng: np.random.Generator):
    """Inverted dropout; returns ``(out, mask)``.

    ``mask`` is the multiplier itself: ``1/(1 - p)`` where an activation is
    kept (probability ``1 - p``), 0 where it is dropped, in x's dtype, so
    ``out = x * mask``. The uniform draws are float64 whatever x's dtype, so a
    seeded ``rng`` drops the same entries in float32 and float64.
    """
    p = check_dropout_probability(p)
    keep = rng.random(x.shape) >= p
    mask = keep.astype(x.dtype) * (1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dout, mask):
    """Gradient flows through the kept activations, scaled as they were: ``dout * mask``."""
    return dout * mask


# -- the memory these kernels allocate (see volnet.ops.workspace); n: values in the whole batch ------------

def batchnorm_workspace(n: int, itemsize: int, train: bool = True) -> ForwardWorkspace:
    """Training (:func:`batchnorm_train_forward`): x_hat = x - mean (kept), x_hat * x_hat for the variance,
    then gamma * x_hat + beta: a temporary and the output (broadcast operands are not elided). Inference
    (:func:`batchnorm_inference_forward`): x * scale + shift. Compiled: x_hat (kept) and the output alone."""
    b = itemsize
    if batchnorm_plan(float_dtype(b)) == "compiled":
        return ForwardWorkspace(((n * b, True),) if train else (), n * b)
    if train:
        return ForwardWorkspace(((n * b, True),), n * b, transient=n * b)
    return ForwardWorkspace((), n * b, transient=n * b)


def batchnorm_backward_workspace(n: int, itemsize: int, *, grads: int = 0,
                                 dout_contiguous: bool = True) -> BackwardWorkspace:
    """:func:`batchnorm_backward`: dout * x_hat for dgamma; then m * dout - dbeta, x_hat * dgamma, their
    difference (NumPy reuses the first temporary when it is large) and dx = coef * (...). Compiled: dx
    alone (and a contiguous copy of a strided dout)."""
    b = itemsize
    if batchnorm_plan(float_dtype(b)) == "compiled":
        return BackwardWorkspace(grads + (1 if dout_contiguous else 2) * n * b, n * b)
    volumes = 2 if n * b >= ELIDE_BYTES else 3
    return BackwardWorkspace(grads + volumes * n * b, n * b)


def dropout_workspace(n: int, itemsize: int, train: bool = True) -> ForwardWorkspace:
    """Training (:func:`dropout_forward`): rng.random (float64, 8 bytes) >= p gives a bool mask, then
    mask = keep.astype * scale (kept) and out = x * mask; inference: the identity (a view)."""
    b = itemsize
    if not train:
        return ForwardWorkspace((), None)
    return ForwardWorkspace(((n * b, True),), n * b, transient=max(9 * n - 2 * n * b, n))


def dropout_backward_workspace(n: int, itemsize: int) -> BackwardWorkspace:
    """:func:`dropout_backward`: dout * mask."""
    return BackwardWorkspace(n * itemsize, n * itemsize)
