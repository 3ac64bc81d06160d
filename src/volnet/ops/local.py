"""Locally-connected layers: convolution without parameter sharing, naive and fast.

The notes relax parameter sharing when inputs have a centred structure
(faces centred in the image, where eye-specific or hair-specific features
belong at different positions): every output position gets its own filters.

Notation: x is ``(N, H, W, D)``; weights w are ``(H2, W2, F, F, D, K)``, K
filters of F x F x D *for every output position* ``(i, j)``; biases b are
``(H2, W2, K)``. The output is ``(N, H2, W2, K)`` with
``H2 = (H - F + 2P)/S + 1`` as for CONV (:mod:`volnet.shapes`; stride,
padding, ``fit`` and dilation work the same way), so the weights are
``H2*W2`` times those of a CONV layer with the same F, D and K.

* :func:`local_forward_naive` loops over output positions:
  ``out[n, i, j, k] = np.sum(xp[n, window(i, j)] * w[i, j, ..., k]) + b[i, j, k]``.
* :func:`local_forward` stretches the receptive fields into rows (im2col, as
  for CONV) and does one matrix multiply *per position*, batched in a single
  ``np.matmul`` of ``(H2*W2, N, F*F*D) @ (H2*W2, F*F*D, K)``.

With every position's filters equal to one ``(F, F, D, K)`` filter bank the
layer is a CONV layer, and the CONV filters' gradient is the sum over
positions of these per-position gradients (parameter sharing, in the notes'
words, adds the gradients up across each depth slice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..shapes import ShapeError
from .dense import batch_sums
from .window import Geometry, col2im, geometry, im2row, pad_spatial, unpad_spatial
from .workspace import BackwardWorkspace, ForwardWorkspace, padded, unpadded, windows_contiguous


@dataclass(frozen=True)
class LocalCache:
    """What the backward pass needs: the padded input, the weights and the geometry."""

    xp: np.ndarray
    w: np.ndarray
    geometry: Geometry


def _setup(x, w, b, stride, pad, dilation, fit, layer):
    """Check the arrays, work out the geometry and pad the input."""
    name = layer or "local"
    if w.ndim != 6:
        raise ShapeError(f"{name}: weights must be (H2, W2, F, F, D, K), got shape {w.shape}")
    if x.ndim == 4 and x.shape[3] != w.shape[4]:
        raise ShapeError(
            f"{name}: input depth D={x.shape[3]} does not match the filters' depth {w.shape[4]} "
            f"(weights {w.shape}); filters always span the full input depth"
        )
    g = geometry(x.shape, w.shape[2:4], stride, pad, dilation, fit=fit, layer=layer)
    if w.shape[:2] != g.out_hw:
        raise ShapeError(
            f"{name}: weights hold filters for {w.shape[0]}x{w.shape[1]} output positions but the "
            f"output is {g.out_hw[0]}x{g.out_hw[1]}; a locally-connected layer is built for one input size"
        )
    if b.shape != (*g.out_hw, w.shape[5]):
        raise ShapeError(f"{name}: biases must be (H2, W2, K) = {(*g.out_hw, w.shape[5])}, got shape {b.shape}")
    return g, pad_spatial(x, g.pads)


def local_forward_naive(x, w, b, stride=1, pad=0, dilation=1, *, fit=None, layer=None):
    """Locally-connected layer by looping over output positions (slow, clear).

    ``out[n, i, j, k] = np.sum(xp[n, i*S : i*S+F, j*S : j*S+F, :] * w[i, j, ..., k]) + b[i, j, k]``
    where xp is x zero-padded by P (and the slice steps by ``dilation``).
    """
    g, xp = _setup(x, w, b, stride, pad, dilation, fit, layer)
    (Ho, Wo), (Fh, Fw), (Sh, Sw), (dh, dw) = g.out_hw, g.size, g.stride, g.dilation
    K = w.shape[5]
    out = np.zeros((x.shape[0], Ho, Wo, K), dtype=np.result_type(x, w))
    for n in range(x.shape[0]):
        for i in range(Ho):
            for j in range(Wo):
                field = xp[n, i * Sh: i * Sh + (Fh - 1) * dh + 1: dh, j * Sw: j * Sw + (Fw - 1) * dw + 1: dw, :]
                for k in range(K):
                    out[n, i, j, k] = np.sum(field * w[i, j, :, :, :, k]) + b[i, j, k]
    return out, LocalCache(xp=xp, w=w, geometry=g)


def local_backward_naive(dout, cache: LocalCache):
    """Backward of :func:`local_forward_naive`: every output neuron adds its share.

    ``out[n, i, j, k]`` used one receptive field and the filter ``w[i, j, ..., k]``
    of its own position, so that filter's gradient sums over the batch only
    (no other position shares it), and the input's gradient over every
    position and filter that saw it.
    """
    g, xp, w = cache.geometry, cache.xp, cache.w
    (Ho, Wo), (Fh, Fw), (Sh, Sw), (dh, dw_) = g.out_hw, g.size, g.stride, g.dilation
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for n in range(dout.shape[0]):
        for i in range(Ho):
            for j in range(Wo):
                rows = slice(i * Sh, i * Sh + (Fh - 1) * dh + 1, dh)
                cols = slice(j * Sw, j * Sw + (Fw - 1) * dw_ + 1, dw_)
                for k in range(w.shape[5]):
                    dw[i, j, :, :, :, k] += xp[n, rows, cols, :] * dout[n, i, j, k]
                    dxp[n, rows, cols, :] += w[i, j, :, :, :, k] * dout[n, i, j, k]
    db = dout.sum(axis=0)
    return unpad_spatial(dxp, g), dw, db


def _position_rows(xp, g: Geometry):
    """im2col rows grouped by output position: a ``(H2*W2, N, F*F*D)`` view of :func:`im2row`."""
    rows = im2row(xp, g)
    return rows.reshape(xp.shape[0], -1, rows.shape[1]).transpose(1, 0, 2)


def local_forward(x, w, b, stride=1, pad=0, dilation=1, *, fit=None, layer=None):
    """Fast locally-connected layer: im2col, then one batched matrix multiply over positions.

    Same arguments and result as :func:`local_forward_naive`.
    """
    g, xp = _setup(x, w, b, stride, pad, dilation, fit, layer)
    N, (Ho, Wo), K = x.shape[0], g.out_hw, w.shape[5]
    out = np.empty((N, Ho, Wo, K), dtype=np.result_type(x, w))
    # Position p's (N, F*F*D) rows times its own (F*F*D, K) filters, written
    # straight into the (N, H2, W2, K) output through a transposed view.
    np.matmul(_position_rows(xp, g), w.reshape(Ho * Wo, -1, K), out=out.reshape(N, Ho * Wo, K).transpose(1, 0, 2))
    out += b
    return out, LocalCache(xp=xp, w=w, geometry=g)


def local_backward(dout, cache: LocalCache, input_grad: bool = True):
    """Fast backward of :func:`local_forward`: returns ``(dx, dw, db)``.

    ``input_grad=False`` skips dx (returned as None). dw is one batched
    matrix multiply with the rebuilt im2col rows, db sums over the batch;
    dx multiplies dout by every position's transposed filters and adds the
    resulting columns back where they were read from (col2im).
    """
    g, xp, w = cache.geometry, cache.xp, cache.w
    N, (Ho, Wo), K = dout.shape[0], g.out_hw, w.shape[5]
    w_pos = w.reshape(Ho * Wo, -1, K)  # (H2*W2, F*F*D, K)
    dout_pos = dout.reshape(N, Ho * Wo, K).transpose(1, 0, 2)  # (H2*W2, N, K)
    dw = np.matmul(_position_rows(xp, g).transpose(0, 2, 1), dout_pos).reshape(w.shape)
    db = batch_sums(dout, 1)
    if not input_grad:
        return None, dw, db
    drows = np.empty((N, Ho * Wo, w_pos.shape[1]), dtype=np.result_type(dout, w))
    np.matmul(dout_pos, w_pos.transpose(0, 2, 1), out=drows.transpose(1, 0, 2))
    return unpad_spatial(col2im(drows.reshape(N * Ho * Wo, -1), g, xp.shape), g), dw, db


def local_workspace(g: Geometry, filters: int, itemsize: int) -> ForwardWorkspace:
    """The memory :func:`local_forward` allocates (see :mod:`volnet.ops.workspace`): xp = pad_spatial(x) (a
    copy when padded), kept in the cache; the im2col rows of the whole batch; the output."""
    b, (N, _, _, D) = itemsize, g.in_shape
    xp_shape, copies, _ = padded(g)
    (Ho, Wo), (Fh, Fw) = g.out_hw, g.size
    rows = 0 if windows_contiguous(g) else N * Ho * Wo * Fh * Fw * D * b
    private = ((math.prod(xp_shape) * b, True),) if copies else ()
    return ForwardWorkspace(private, N * Ho * Wo * filters * b, keeps_input=not copies, transient=rows)


def local_backward_workspace(g: Geometry, filters: int, itemsize: int, *, grads: int = 0, input_grad: bool = True,
                             dout_contiguous: bool = True) -> BackwardWorkspace:
    """The memory :func:`local_backward` allocates on top of dout and the cache: dout.reshape (a copy when
    dout is strided); the whole im2col copy for dw; dx: drows (N, H2*W2, F*F*D) and the padded dxp that
    col2im fills. ``grads`` is the bytes of the new dw and db."""
    b, (N, H, W, D) = itemsize, g.in_shape
    xp_shape, _, _ = padded(g)
    (Ho, Wo), (Fh, Fw) = g.out_hw, g.size
    rows = N * Ho * Wo * Fh * Fw * D * b
    grads += 0 if dout_contiguous else N * Ho * Wo * filters * b
    if not input_grad:
        return BackwardWorkspace(rows + grads, 0)
    dxp = math.prod(xp_shape) * b
    full, dx, contiguous = unpadded(g, dxp, N * H * W * D, b)
    return BackwardWorkspace(max(rows + grads, grads + rows + dxp, grads + dxp + full), dx, contiguous)
