"""Compiled max and average pooling on NHWC batches, channels innermost: the fast path of
:mod:`volnet.ops.pool` (its plan, ``pool_plan``, says where it runs; without Numba the NumPy tap passes do).

The forward kernels hold a block of channels in registers (:data:`BLOCK_BYTES`; compiled as
:mod:`volnet.ops.tiled` compiles the direct convolutions); the backward kernel runs each loop over the
channels as one vectorised pass over a row of D values, with Numba's default flags. The backward passes
gather: every input value sums the outputs of the windows that hold it (at most ceil(F/S)^2 of them),
written once, straight into dx (no padded buffer, no zeroing pass over it).
"""

from __future__ import annotations

import numpy as np

from . import threads, tiled
from .jit import compiled


def max_pool(xp: np.ndarray, g, switch_dtype, workers: int = 1, *, blas_held: bool = False):
    """``(out, switches)`` of max pooling the padded batch ``xp (N, Hp, Wp, D)`` as geometry ``g`` says:
    ``out (N, H2, W2, D)``, and per output the tap ``u*F + v`` of the first maximum (NaN wins and stays)."""
    out = np.empty((xp.shape[0], *g.out_hw, xp.shape[3]), dtype=xp.dtype)
    switches = np.empty(out.shape, dtype=switch_dtype)
    threads.split_kernel(_forward_kernel(xp.dtype), (xp, *g.size, *g.stride, True, True, out, switches), len(out),
                         workers, blas_held=blas_held)
    return out, switches


def max_pool_values(xp: np.ndarray, g, workers: int = 1, *, blas_held: bool = False) -> np.ndarray:
    """:func:`max_pool`'s ``out`` alone, without switches (inference, where no backward pass follows)."""
    out = np.empty((xp.shape[0], *g.out_hw, xp.shape[3]), dtype=xp.dtype)
    threads.split_kernel(_forward_kernel(xp.dtype), (xp, *g.size, *g.stride, True, False, out, _NO_SWITCHES), len(out),
                         workers, blas_held=blas_held)
    return out


def avg_pool(xp: np.ndarray, g, workers: int = 1, *, blas_held: bool = False) -> np.ndarray:
    """Average pooling of the (zero-)padded batch ``xp``: ``(N, H2, W2, D)``, the padding counted."""
    out = np.empty((xp.shape[0], *g.out_hw, xp.shape[3]), dtype=xp.dtype)
    threads.split_kernel(_forward_kernel(xp.dtype), (xp, *g.size, *g.stride, False, False, out, _NO_SWITCHES), len(out),
                         workers, blas_held=blas_held)
    return out


def pool_backward(dout: np.ndarray, g, switches=None, workers: int = 1, *, blas_held: bool = False,
                  rectified=None) -> np.ndarray:
    """dx ``(N, H, W, D)`` of max pooling (``switches`` from :func:`max_pool`) or, without them, of average
    pooling, by gathering: each input value sums the share of every window that holds it. ``rectified``
    (the pool's input, a ReLU's output): dx is also passed back through that ReLU, zero wherever
    ``rectified`` is not positive (``relu_backward``'s numbers, without its pass over memory)."""
    dx = np.empty(g.in_shape, dtype=dout.dtype)
    maximum, masked = switches is not None, rectified is not None
    mask = np.ascontiguousarray(rectified, dtype=dx.dtype) if masked else np.zeros((1, 1, 1, 1), dx.dtype)
    if maximum and g.size == g.stride and g.pads[0] == g.pads[2] == 0:  # windows that tile the input
        threads.split_kernel(_tiling_max_backward, (dout, switches, *g.size, masked, mask, dx), len(dx), workers,
                             blas_held=blas_held)
        return dx
    arguments = (dout, _NO_SWITCHES if switches is None else switches, maximum, *g.size, *g.stride, g.pads[0],
                 g.pads[2], masked, mask, dx)
    threads.split_kernel(_pool_backward, arguments, len(dx), workers, blas_held=blas_held)
    return dx


# Average pooling passes these for the switches, so that it runs the kernels max pooling compiled (uint8
# switches): one compile per dtype for both modes, which happens in a network's first step.
_NO_SWITCHES = np.zeros((1, 1, 1, 1), dtype=np.uint8)


# The forward kernels keep a block of BLOCK_BYTES of channels (one AVX-512 register of float32) in a tile whose
# size is a compile-time constant, as volnet.ops.direct's kernels do (volnet.ops.tiled): LLVM's SLP vectoriser
# then turns each tap into one vector load, compare and blend. The branch-free test of a window's maximum
# (``|``, not ``or``, whose short circuit is a branch) keeps them vectorised: LeNet's first POOL 2x2/2 on
# 8 x 28x28x16, one thread on the Intel Xeon: 34 -> 19 us (the measurements: docs/performance-log.md).
BLOCK_BYTES = 64


def _forward_kernel(dtype):
    """The forward kernel whose tile is :data:`BLOCK_BYTES` of channels of ``dtype``."""
    return tiled.kernel(_pool_forward_source, 1, BLOCK_BYTES // np.dtype(dtype).itemsize)


def _pool_forward_source(_, CB: int):
    """The forward kernel with a tile of ``CB`` channels (a closure constant)."""

    def pool_forward(xp, Fh, Fw, Sh, Sw, maximum, switched, out, switches, first, last):  # pragma: no cover
        # out[n, i, j, d]: the max (NaN wins and stays) or the mean of xp's window from (i*Sh, j*Sw); with
        # ``switched`` the tap u*Fw + v of the first maximum in switches (a NaN does not move it). Indices
        # are cast unsigned (Numba's wrap-around of negative ones kept the loops scalar).
        _, Ho, Wo, D = out.shape
        count = Fh * Fw
        acc = tiled.carray(tiled.stack_array(CB, out.dtype), CB)
        won = tiled.carray(tiled.stack_array(CB, switches.dtype), CB)
        whole = D - D % CB
        for n in range(first, last):
            image = tiled.unsigned(n)
            for i in range(Ho):
                for j in range(Wo):
                    row, column = tiled.unsigned(i * Sh), tiled.unsigned(j * Sw)
                    for d0 in range(0, whole, CB):
                        for q in range(CB):
                            acc[q] = xp[image, row, column, tiled.unsigned(d0 + q)]
                            won[q] = 0
                        for u in range(Fh):
                            for v in range(Fw):
                                if u + v == 0:
                                    continue
                                r, c = tiled.unsigned(row + u), tiled.unsigned(column + v)
                                tap = u * Fw + v
                                if not maximum:
                                    for q in range(CB):
                                        acc[q] += xp[image, r, c, tiled.unsigned(d0 + q)]
                                else:  # the winning taps also without switches: that ran faster
                                    for q in range(CB):
                                        candidate, best = xp[image, r, c, tiled.unsigned(d0 + q)], acc[q]
                                        acc[q] = candidate if (candidate > best) | (candidate != candidate) else best
                                        won[q] = tap if candidate > best else won[q]
                        for q in range(CB):
                            out[image, i, j, tiled.unsigned(d0 + q)] = acc[q] if maximum else acc[q] / count
                        if switched:
                            for q in range(CB):
                                switches[image, i, j, tiled.unsigned(d0 + q)] = won[q]
                    for d in range(whole, D):  # the channels past the last whole tile, one at a time
                        best, first_tap = xp[image, row, column, d], 0
                        for u in range(Fh):
                            for v in range(Fw):
                                if u + v == 0:
                                    continue
                                candidate = xp[image, tiled.unsigned(row + u), tiled.unsigned(column + v), d]
                                if maximum:
                                    first_tap = u * Fw + v if candidate > best else first_tap
                                    best = candidate if (candidate > best) | (candidate != candidate) else best
                                else:
                                    best += candidate
                        out[image, i, j, d] = best if maximum else best / count
                        if switched:
                            switches[image, i, j, d] = first_tap

    return pool_forward


@compiled
def _pool_backward(dout, switches, maximum, Fh, Fw, Sh, Sw, top, left, masked, rectified, dx, first,
                   last):  # pragma: no cover - compiled
    _, Ho, Wo, D = dout.shape
    _, H, W, _ = dx.shape
    count = Fh * Fw
    for n in range(first, last):
        for h in range(H):
            # the outputs whose windows hold padded row h + top: i0..i1
            i0, i1 = max(0, (h + top - Fh + Sh) // Sh), min(Ho - 1, (h + top) // Sh)
            for w in range(W):
                j0, j1 = max(0, (w + left - Fw + Sw) // Sw), min(Wo - 1, (w + left) // Sw)
                for d in range(D):
                    dx[n, h, w, d] = 0
                for i in range(i0, i1 + 1):
                    for j in range(j0, j1 + 1):
                        if maximum:
                            k = (h + top - i * Sh) * Fw + (w + left - j * Sw)
                            for d in range(D):
                                if switches[n, i, j, d] == k:
                                    dx[n, h, w, d] += dout[n, i, j, d]
                        else:
                            for d in range(D):
                                dx[n, h, w, d] += dout[n, i, j, d]
                if not maximum:
                    for d in range(D):
                        dx[n, h, w, d] /= count
                if masked:  # through the ReLU below: relu_backward's dout * (out > 0)
                    for d in range(D):
                        dx[n, h, w, d] = dx[n, h, w, d] * (rectified[n, h, w, d] > 0)


@compiled
def _tiling_max_backward(dout, switches, Fh, Fw, masked, rectified, dx, first, last):  # pragma: no cover - compiled
    # Max pooling whose windows tile the input (stride = window, nothing padded before the first row or
    # column: 2x2/2): each dx value lies in one window at most, and is written once, in the order dx lies,
    # its window's dout where its tap won, else 0; the rows and columns no window holds are 0. Against
    # _pool_backward's gather (zeroing each value, then adding to it), one thread on the AMD EPYC Zen 4, with
    # the ReLU's mask: LeNet's first POOL (64 x 28x28x16) 1017 -> 332 us, its second (14x14x32) 394 -> 166.
    _, Ho, Wo, D = dout.shape
    _, H, W, _ = dx.shape
    for n in range(first, last):
        for h in range(H):
            i, u = h // Fh, h % Fh
            j, v = 0, 0  # w's window and tap column, counted rather than divided
            for w in range(W):
                if i >= Ho or j >= Wo:
                    for d in range(D):
                        dx[n, h, w, d] = 0
                elif masked:  # through the ReLU below: relu_backward's dout * (out > 0)
                    for d in range(D):
                        share = dout[n, i, j, d] if switches[n, i, j, d] == u * Fw + v else 0
                        dx[n, h, w, d] = share * (rectified[n, h, w, d] > 0)
                else:
                    for d in range(D):
                        dx[n, h, w, d] = dout[n, i, j, d] if switches[n, i, j, d] == u * Fw + v else 0
                v += 1
                if v == Fw:
                    j, v = j + 1, 0
