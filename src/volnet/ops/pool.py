"""Pooling (the POOL layer's arithmetic): max, average and L2-norm, naive and fast.

Notation: x is ``(N, H, W, D)``; a window of F x F moves with stride S over
every depth slice independently, with no padding. The output is
``(N, H2, W2, D)`` with ``H2 = (H - F)/S + 1`` (see :mod:`volnet.shapes`).
The two usual settings are F=2, S=2 and the overlapping F=3, S=2.

* max:     ``out = max over the window``; backward routes the gradient only
  to the input that held the maximum, found through the *switches* (index
  of the max within each window) recorded in the forward pass.
* average: ``out = mean over the window`` (padding, with ``fit="pad"``,
  counts as zeros).
* L2-norm: ``out = sqrt(sum of squares over the window)``.

``pool_forward_naive(x, F, S, mode)`` loops over output positions; the fast
``pool_forward`` visits the F*F taps of the window instead, each one a
strided slice of the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .window import Geometry, geometry, pad_spatial, tap, unpad_spatial

MODES = ("max", "avg", "l2")


@dataclass(frozen=True)
class PoolCache:
    """Backward needs the geometry plus: the switches (max), the input and
    output (l2), or nothing else (avg)."""

    mode: str
    geometry: Geometry
    padded_shape: tuple
    switches: np.ndarray | None = None
    xp: np.ndarray | None = None
    out: np.ndarray | None = None


def _setup(x, F, S, mode, fit, layer):
    if mode not in MODES:
        raise ValueError(f"pooling mode must be one of {MODES}, got {mode!r}")
    g = geometry(x.shape, F, F if S is None else S, 0, 1, fit=fit, layer=layer, pool=True)
    # Max pooling pads with -inf so that padding never wins; the others with 0.
    xp = pad_spatial(x, g.pads, value=-np.inf if mode == "max" else 0.0)
    return g, xp


def pool_forward_naive(x, F=2, S=None, mode="max", *, fit=None, layer=None):
    """Pooling by looping over output positions: ``out[n,i,j,d] = op(x[n, i*S:i*S+F, j*S:j*S+F, d])``."""
    g, xp = _setup(x, F, S, mode, fit, layer)
    (Ho, Wo), (Fh, Fw), (Sh, Sw) = g.out_hw, g.size, g.stride
    N, D = x.shape[0], x.shape[3]
    out = np.zeros((N, Ho, Wo, D), dtype=x.dtype)
    switches = np.zeros((N, Ho, Wo, D), dtype=np.intp)
    for i in range(Ho):
        for j in range(Wo):
            field = xp[:, i * Sh: i * Sh + Fh, j * Sw: j * Sw + Fw, :].reshape(N, Fh * Fw, D)
            if mode == "max":
                switches[:, i, j] = field.argmax(axis=1)
                out[:, i, j] = field.max(axis=1)
            elif mode == "avg":
                out[:, i, j] = field.mean(axis=1)
            else:
                out[:, i, j] = np.sqrt((field * field).sum(axis=1))
    return out, PoolCache(mode, g, xp.shape, switches if mode == "max" else None,
                          xp if mode == "l2" else None, out if mode == "l2" else None)


def pool_backward_naive(dout, cache: PoolCache):
    """Backward of :func:`pool_forward_naive`, one output position at a time."""
    g = cache.geometry
    (Ho, Wo), (Fh, Fw), (Sh, Sw) = g.out_hw, g.size, g.stride
    N, _, _, D = cache.padded_shape
    dxp = np.zeros(cache.padded_shape, dtype=dout.dtype)
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * Sh, i * Sh + Fh), slice(j * Sw, j * Sw + Fw)
            if cache.mode == "max":
                dfield = np.zeros((N, Fh * Fw, D), dtype=dout.dtype)
                np.put_along_axis(dfield, cache.switches[:, i, j][:, None, :], dout[:, i, j][:, None, :], axis=1)
                dxp[:, rows, cols] += dfield.reshape(N, Fh, Fw, D)
            elif cache.mode == "avg":
                dxp[:, rows, cols] += dout[:, i, j][:, None, None, :] / (Fh * Fw)
            else:
                norm = cache.out[:, i, j][:, None, None, :]
                share = np.divide(cache.xp[:, rows, cols], norm, out=np.zeros_like(cache.xp[:, rows, cols]),
                                  where=norm > 0)
                dxp[:, rows, cols] += dout[:, i, j][:, None, None, :] * share
    return unpad_spatial(dxp, g)


def pool_forward(x, F=2, S=None, mode="max", *, fit=None, layer=None):
    """Fast pooling: combine the F*F strided slices of the batch, one tap at a time.

    Same arguments and result as :func:`pool_forward_naive`. For max pooling
    the switches record, per output neuron, which tap (``u*F + v``) won.
    """
    g, xp = _setup(x, F, S, mode, fit, layer)
    Fh, Fw = g.size
    taps = [tap(g, u, v) for u in range(Fh) for v in range(Fw)]
    if mode == "max":
        out = xp[:, taps[0][0], taps[0][1]].copy()
        switches = np.zeros(out.shape, dtype=np.uint8 if Fh * Fw < 256 else np.intp)
        for k, (rows, cols) in enumerate(taps[1:], start=1):
            candidate = xp[:, rows, cols]
            wins = candidate > out  # strict: ties keep the first maximum, like argmax
            switches[wins] = k
            np.maximum(out, candidate, out=out)
        return out, PoolCache(mode, g, xp.shape, switches=switches)
    out = np.zeros((x.shape[0], *g.out_hw, x.shape[3]), dtype=x.dtype)
    for rows, cols in taps:
        window_tap = xp[:, rows, cols]
        out += window_tap if mode == "avg" else window_tap * window_tap
    if mode == "avg":
        out /= Fh * Fw
        return out, PoolCache(mode, g, xp.shape)
    np.sqrt(out, out=out)
    return out, PoolCache(mode, g, xp.shape, xp=xp, out=out)


def pool_backward(dout, cache: PoolCache):
    """Fast backward of :func:`pool_forward`, tap by tap."""
    g = cache.geometry
    Fh, Fw = g.size
    dxp = np.zeros(cache.padded_shape, dtype=dout.dtype)
    if cache.mode == "l2":
        scaled = np.divide(dout, cache.out, out=np.zeros_like(dout), where=cache.out > 0)
    for k, (rows, cols) in enumerate(tap(g, u, v) for u in range(Fh) for v in range(Fw)):
        if cache.mode == "max":
            dxp[:, rows, cols] += np.where(cache.switches == k, dout, 0)
        elif cache.mode == "avg":
            dxp[:, rows, cols] += dout / (Fh * Fw)
        else:
            dxp[:, rows, cols] += scaled * cache.xp[:, rows, cols]
    return unpad_spatial(dxp, g)
