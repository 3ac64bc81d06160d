"""Convolution (the CONV layer's arithmetic), naive and fast, forward and backward.

Notation: x is ``(N, H, W, D)``; weights w are ``(F, F, D, K)`` (K filters,
each F x F spatially and the full input depth D deep); biases b are ``(K,)``.
The output is ``(N, H2, W2, K)`` with ``H2 = (H - F + 2P)/S + 1`` and the same
for W2 (see :mod:`volnet.shapes`; a dilated filter spans
``dilation*(F-1)+1``).

Two versions of the same layer:

* :func:`conv_forward_naive` loops over output positions exactly like the notes:
  ``V[x, y, d] = np.sum(X[x*S : x*S+F, y*S : y*S+F, :] * W_d) + b_d``.
* :func:`conv_forward` stretches every receptive field into a row (:func:`im2col`) and computes all dot
  products as matrix multiplies, a block of images at a time (the F*F-times-larger matrix never whole).

Like every kernel in ``volnet.ops`` they return ``(out, cache)``; the
backward functions take ``(dout, cache)`` and return ``(dx, dw, db)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..shapes import ShapeError, effective_extent
from . import (conv_rows, direct, direct_input, direct_weights, native_blas, norm, streamed, threads, winograd,
               winograd_5x5, winograd_fused)
from .conv_plan import plan_conv, pools_in_kernel
from .memo import hashable, remembered
from .pool import forward_step as pool_step
from .flipped import flipped_filters
from .window import Fill, Geometry, geometry, im2row, pad_spatial, unpad_spatial


@dataclass(frozen=True)
class ConvCache:
    """What the backward pass needs: the padded input, the weights and the geometry.

    Only the input is kept (not its im2col matrix, which is F*F times larger);
    the fast backward rebuilds the columns, trading one copy for memory.
    """

    xp: np.ndarray
    w: np.ndarray
    geometry: Geometry


def flipped_geometry(g: Geometry, filters: int) -> Geometry:
    """The geometry of :func:`conv_backward_input_flipped`'s correlation (stride 1): dout, ``filters`` deep
    (spread out by the stride), padded to ``(H + eh - 1, W + ew - 1)`` (eh, ew the dilated filter's extent)
    so that output row 0 lines up with input row 0, correlated with the flipped filters into ``(H, W)``. Its
    pads say which rows of the padded dout are padding: the direct kernel skips the filter rows that read
    only those (LeNet's 14x14x16->32 input gradient: 2.97 -> 2.72 ms on one core)."""
    N, H, W, _ = g.in_shape
    eh, ew = effective_extent(g.size[0], g.dilation[0]), effective_extent(g.size[1], g.dilation[1])
    (Ho, Wo), (Sh, Sw), (top, _, left, _) = g.out_hw, g.stride, g.pads
    spread = ((Ho - 1) * Sh + 1, (Wo - 1) * Sw + 1)
    pads = (eh - 1 - top, H + top - spread[0], ew - 1 - left, W + left - spread[1])
    return Geometry(in_shape=(N, *spread, filters), size=g.size, stride=(1, 1), dilation=g.dilation, pads=pads,
                    out_hw=(H, W))


def _check(x_shape, w_shape, b_shape, layer):
    """Refuse weights, biases (``b_shape`` None: none) and an input whose shapes do not make a CONV."""
    if len(w_shape) != 4:
        raise ShapeError(f"{layer or 'conv'}: weights must be (F, F, D, K), got shape {w_shape}")
    if b_shape is not None and b_shape != (w_shape[3],):
        raise ShapeError(f"{layer or 'conv'}: biases must be (K,) = ({w_shape[3]},), got shape {b_shape}")
    if len(x_shape) == 4 and x_shape[3] != w_shape[2]:
        raise ShapeError(
            f"{layer or 'conv'}: input depth D={x_shape[3]} does not match the filters' depth "
            f"{w_shape[2]} (weights {w_shape}); filters always span the full input depth"
        )


def im2col(x: np.ndarray, F, stride=1, pad=0, dilation=1, *, fit=None) -> np.ndarray:
    """Stretch every receptive field into a column, as in the notes' worked example.

    ``x`` is one volume ``(H, W, D)`` or a batch ``(N, H, W, D)``. The result
    ``X_col`` has one column per output position (``N*H2*W2`` of them) and
    ``F*F*D`` rows, ordered (row, column, depth) like the weights, so that
    ``W_row @ X_col`` with ``W_row = w.reshape(-1, K).T`` computes the layer.

    >>> x = np.zeros((227, 227, 3)); im2col(x, 11, stride=4).shape
    (363, 3025)
    """
    batch = x if x.ndim == 4 else x[None]
    g = geometry(batch.shape, F, stride, pad, dilation, fit=fit)
    return im2row(pad_spatial(batch, g.pads), g).T


def conv_forward_naive(x, w, b, stride=1, pad=0, dilation=1, *, fit=None, layer=None):
    """Convolution by looping over output positions, one dot product each (slow, clear).

    ``out[n, i, j, k] = np.sum(xp[n, i*S : i*S+F, j*S : j*S+F, :] * w[..., k]) + b[k]``
    where xp is x zero-padded by P (and the slice steps by ``dilation``).
    """
    _check(x.shape, w.shape, None if b is None else b.shape, layer)
    g = geometry(x.shape, w.shape[:2], stride, pad, dilation, fit=fit, layer=layer)
    xp = pad_spatial(x, g.pads)
    (Ho, Wo), (Fh, Fw), (Sh, Sw), (dh, dw) = g.out_hw, g.size, g.stride, g.dilation
    K = w.shape[3]
    out = np.zeros((x.shape[0], Ho, Wo, K), dtype=np.result_type(x, w))
    for n in range(x.shape[0]):
        for i in range(Ho):
            for j in range(Wo):
                field = xp[n, i * Sh: i * Sh + (Fh - 1) * dh + 1: dh, j * Sw: j * Sw + (Fw - 1) * dw + 1: dw, :]
                for k in range(K):
                    out[n, i, j, k] = np.sum(field * w[:, :, :, k]) + b[k]
    return out, ConvCache(xp=xp, w=w, geometry=g)


def conv_backward_naive(dout, cache: ConvCache):
    """Backward of :func:`conv_forward_naive`: every output neuron adds its share.

    Each output ``out[n, i, j, k]`` used one receptive field and filter k, so
    its gradient flows back to exactly those: the filter's gradient is summed
    over all positions of its depth slice (parameter sharing), and the
    input's gradient over all filters and positions that saw it.
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
                for k in range(w.shape[3]):
                    dw[:, :, :, k] += xp[n, rows, cols, :] * dout[n, i, j, k]
                    dxp[n, rows, cols, :] += w[:, :, :, k] * dout[n, i, j, k]
    db = dout.sum(axis=(0, 1, 2))
    return unpad_spatial(dxp, g), dw, db


def conv_forward(x, w, b, stride=1, pad=0, dilation=1, *, fit=None, layer=None, relu=False, affine=None,
                 workers=None):
    """Fast convolution: im2col, then a matrix multiply ``rows @ W``, a block of images at a time.

    Same arguments and result as :func:`conv_forward_naive`, and ``b=None`` for
    a layer without biases (nothing is added); ``relu=True`` also rectifies each block of the output while
    it is in cache (a following ReLU, fused); ``affine=(scale, shift)`` per filter maps it ``out * scale +
    shift`` first (a following BatchNorm in inference, fused). ``workers`` (a :class:`volnet.ops.threads.Workers`;
    None: a network pass of this call alone, :func:`volnet.ops.threads.kernel_workers`) are the threads it
    may split the batch over. What follows from the shapes alone (the checks, geometry, plan and kernel) is
    worked out once per layer and shape (:func:`forward_step`).
    """
    with threads.kernel_workers(workers, len(x) if np.ndim(x) else 1, split_image=True) as held:
        step = forward_step(x.shape, x.dtype, w.shape, w.dtype, None if b is None else b.shape, hashable(stride),
                             hashable(pad), hashable(dilation), fit, layer, relu, affine is not None, held)
        return step(x, w, b, affine)


@remembered
def forward_step(x_shape, x_dtype, w_shape, w_dtype, b_shape, stride, pad, dilation, fit, layer, relu: bool,
                 affine: bool, workers, pool: int = 1):
    """:func:`conv_forward` on arrays of these shapes and dtypes under ``workers``, as a function ``(x, w, b,
    affine) -> (out, cache)`` of the arrays alone: a batch-1 forward's bookkeeping (checks, geometry, plan,
    kernel) was most of its time (LeNet at batch 1: a CONV 38 us, 6.5 of them its arithmetic). ``pool`` > 1
    (dividing the output's height and width): the output max pooled ``pool x pool`` with stride ``pool``, in
    the direct forward's output pass where the plan takes it (a following POOL fused in inference: the CONV's
    own output is never written), else by the pooling kernels after it."""
    _check(x_shape, w_shape, b_shape, layer)
    g = geometry(x_shape, w_shape[:2], stride, pad, dilation, fit=fit, layer=layer)
    K, dtype = w_shape[3], np.result_type(x_dtype, w_dtype)
    plan = plan_conv(g, K, dtype, workers.cores, workers.blas_held, workers.split_rows)
    pooled = not affine and pools_in_kernel(plan.forward, g, pool)
    if plan.forward in ("direct", "winograd_fused"):  # (a BatchNorm's map in a pass of its own after it)
        correlate = _correlator(g, K, dtype, plan.forward, relu and not affine, workers, pool if pooled else 1)

        def convolve(xp, w, b, fill, affine):
            out = correlate(xp, w, b, fill)
            return out if affine is None else norm.affine_forward(out, *affine, workers=workers, relu=relu,
                                                                   in_place=True)
    else:
        def convolve(xp, w, b, fill, affine):
            return (_convolve(xp, g, w, b, relu, workers, fill) if affine is None
                    else _convolve_affine(xp, g, w, b, relu, workers, fill, *affine))

    padding = _padder(x_shape, x_dtype, dtype, g.pads)
    pooling = (pool_step((x_shape[0], *g.out_hw, K), dtype, pool, pool, "max", 0, None, layer, False, workers)
               if pool > 1 and not pooled else None)

    def step(x, w, b, affine):
        xp, fill = padding(x)
        out = convolve(xp, w, b, fill, affine)
        return out if pooling is None else pooling(out)[0], ConvCache(xp=xp, w=w, geometry=g)

    return step


def _convolve_affine(xp, g: Geometry, w, b, relu, workers, fill, scale, shift):
    """:func:`_convolve`, then ``out * scale + shift`` and the ReLU: in the output pass of im2col at batch 1 (its
    ``scale``), else in one pass of its own over the output, in place. (A scale in the direct forward's output
    pass slowed its first layers 11%, unscaled too: 28x28x1->16 at batch 64 0.65 -> 0.72 ms.)"""
    plan = plan_conv(g, w.shape[3], np.result_type(xp, w), workers.cores, workers.blas_held, workers.split_rows)
    if plan.forward == "im2col" and workers.split_rows:
        return _convolve(xp, g, w, shift if b is None else b * scale + shift, relu, workers, fill, scale)
    out = _convolve(xp, g, w, b, False, workers, fill)
    return norm.affine_forward(out, scale, shift, workers=workers, relu=relu, in_place=True)


def _padding(x, pads, w):
    """``(xp, fill)`` for :func:`_convolve` (:func:`_padder`'s)."""
    return _padder(x.shape, x.dtype, np.result_type(x, w), pads)(x)


def _padder(x_shape, x_dtype, dtype, pads):
    """A function ``x -> (xp, fill)`` for :func:`_convolve` on batches of ``x_shape`` and ``x_dtype``, computed in
    ``dtype``: where a batch of several images is padded (not only cropped) and already in ``dtype``, xp
    still empty and the ``fill`` with which each part of the kernel pads its own images
    (:func:`volnet.ops.window.pad_images`); else :func:`~volnet.ops.window.pad_spatial`'s xp (x itself where
    nothing is padded) and None (one image: no split to share the copy)."""
    N, H, W, D = x_shape
    top, bottom, left, right = pads
    if N > 1 and any(p > 0 for p in pads) and x_dtype == dtype:
        shape = (N, H + top + bottom, W + left + right, D)

        def to_fill(x):
            xp = np.empty(shape, x.dtype)
            return xp, Fill(x, xp, pads)

        return to_fill
    if not any(pads):
        return lambda x: (x, None)
    return lambda x: (pad_spatial(x, pads), None)


def conv_backward(dout, cache: ConvCache, input_grad: bool = True, *, workers=None):
    """Fast backward of :func:`conv_forward`: returns ``(dx, dw, db)``.

    ``input_grad=False`` skips dx (returned as None): the first layer of a
    network has no use for it, and it costs as much as the forward pass.

    dw is ``rows.T @ dout`` summed over blocks of images, with the im2col
    rows rebuilt block by block, or for 3x3 stride-1 layers where
    :func:`volnet.ops.winograd.applies_to_weight_gradient` (enough filters, or
    the batch split over the cores) :func:`volnet.ops.winograd.weight_gradient`,
    and for 5x5 stride-1 ones :func:`volnet.ops.winograd_5x5.weight_gradient`.
    dx is, for stride 1, a convolution of dout with the flipped filters
    (:func:`conv_backward_input_flipped`); for
    larger strides one such convolution per stride phase (:func:`volnet.ops.direct_input.input_gradient_by_phases`)
    where the plan says, else it sends ``dout @ W.T`` back to where each column was
    read from (col2im), one filter tap at a time (see
    :func:`~volnet.ops.conv_rows.input_gradient_deep`). Inputs only a few channels deep take
    :func:`~volnet.ops.conv_rows.input_gradient_shallow`. ``workers`` as in :func:`conv_forward`.
    """
    with threads.kernel_workers(workers, len(dout)) as held:
        return _backward(dout, cache, input_grad, held)


def _backward(dout, cache: ConvCache, input_grad: bool, workers):
    """:func:`conv_backward` with its workers."""
    g, xp, w = cache.geometry, cache.xp, cache.w
    N, D, K = xp.shape[0], xp.shape[3], w.shape[3]
    dout_rows = dout.reshape(-1, K)
    dtype = np.result_type(xp, dout)
    plan = plan_conv(g, K, dtype, workers.cores, workers.blas_held)
    if plan.weight_gradient == "winograd":
        step = conv_rows.images_per_block(N, winograd.bytes_per_image(g.out_hw, N, D, K, dtype.itemsize))
        count = winograd.workers(N, g.out_hw, D, K, workers.blas_held, workers.cores)
        # dout_rows is already a contiguous copy where dout is strided: reuse it rather than copy again
        dw, db = winograd.weight_gradient(xp, dout_rows.reshape(dout.shape), step, count,
                                          blas_held=workers.blas_held)
    elif plan.weight_gradient == "direct":
        dw, db = direct_weights.weight_gradient(xp, dout_rows.reshape(dout.shape), g,
                                                direct.workers(g, K, workers), blas_held=workers.blas_held)
    elif plan.weight_gradient == "winograd_5x5":
        r = g.size[0]
        step = winograd_5x5.images_per_block(g.out_hw, D, K, r, N, dtype.itemsize, conv_rows.BLOCK_BYTES,
                                                 weight_gradient=True)
        count = workers.for_multiply_adds(dout_rows.size * r * r * D, N)
        dw, db = winograd_5x5.weight_gradient(xp, dout_rows.reshape(dout.shape), r, step, count,
                                                  blas_held=workers.blas_held)
    else:
        dw, db = conv_rows.weight_gradient(dout_rows, xp, g, workers)
    dx = _input_gradient(dout, w, g, xp.shape, plan.input_gradient, workers) if input_grad else None
    return dx, dw.reshape(w.shape), db


def _convolve(xp, g: Geometry, w, bias=None, relu=False, workers=threads.SERIAL, fill=None, scale=None):
    """``(N, H2, W2, K)``: the padded batch xp correlated with ``w (Fh, Fw, D, K)`` as :func:`plan_conv` says;
    ``fill`` (:func:`volnet.ops.window.pad_images`), where given, first fills xp's images in each part;
    ``scale`` multiplies each sum before the bias (im2col at batch 1 only).

    3x3 stride-1 layers at least ``winograd.MIN_DEPTH`` deep take :func:`volnet.ops.winograd.correlate`, which
    does 2.25-4x fewer multiply-adds than im2col (its measured gain: docs/performance-log.md), unless Numba is
    not installed; first layers, narrow 3x3 and LeNet-sized 5x5 ones :func:`volnet.ops.direct.correlate`;
    other 5x5 stride-1 layers :func:`volnet.ops.winograd_5x5.correlate` (6.25x fewer: F(4x4, 5x5)); both
    Winograds where the batch has enough output tiles. The rest take im2col (:func:`~volnet.ops.conv_rows.correlate`,
    or at batch 1 :func:`volnet.ops.native_blas.correlate`)."""
    N, D, K = xp.shape[0], xp.shape[3], w.shape[3]
    dtype = np.result_type(xp, w)
    forward = plan_conv(g, K, dtype, workers.cores, workers.blas_held, workers.split_rows).forward
    if forward == "winograd":
        return _winograd(xp, g, w, bias, relu, workers, fill)
    if forward in ("direct", "winograd_fused"):
        return _correlator(g, K, dtype, forward, relu, workers)(xp, w, bias, fill)
    if forward == "streamed":
        if fill:
            fill(0, N)
        return streamed.correlate(xp, g, w, bias, relu, workers.rows())
    if forward == "winograd_5x5":
        r = g.size[0]
        step = winograd_5x5.images_per_block(g.out_hw, D, K, r, N, dtype.itemsize, conv_rows.BLOCK_BYTES)
        count = workers.for_multiply_adds(N * g.out_hw[0] * g.out_hw[1] * K * r * r * D, N)
        return winograd_5x5.correlate(xp, w, bias, relu, step, count, blas_held=workers.blas_held, fill=fill)
    if workers.split_rows:  # one image: its output split over Numba's threads, each calling BLAS
        if fill:
            fill(0, N)
        return native_blas.correlate(xp, g, w.reshape(-1, K), bias, relu, workers.rows(),
                                     scale).reshape(N, *g.out_hw, K)
    return conv_rows.correlate(xp, g, w.reshape(-1, K), bias, relu, workers, fill).reshape(N, *g.out_hw, K)


def _correlator(g: Geometry, filters: int, dtype, forward: str, relu: bool, workers, pool: int = 1,
                flipped: bool = False):
    """The compiled correlation ``(xp, w, bias, fill) -> out`` of the plan's ``forward``, ``"direct"`` or
    ``"winograd_fused"``, with the batch split over ``workers`` as :func:`volnet.ops.direct.workers` counts it;
    ``flipped``: w as an input gradient's filters, unflipped (``"winograd_fused"`` only)."""
    count = direct.workers(g, filters, workers)
    if forward == "winograd_fused":
        return winograd_fused.correlator(g, filters, dtype, relu, count, workers.blas_held, pool, flipped)
    return direct.correlator(g, filters, dtype, relu, count, workers.blas_held, workers.rows(), pool)


def _winograd(xp, g: Geometry, w, bias, relu, workers, fill, flipped: bool = False):
    """:func:`_convolve` by :func:`volnet.ops.winograd.correlate`, with its blocks and threads; ``flipped``: with
    ``w (3, 3, K, D)`` flipped in space and transposed (an input gradient's filters; see
    :func:`volnet.ops.winograd.filter_transform`)."""
    N, D, K = xp.shape[0], xp.shape[3], w.shape[2 if flipped else 3]
    dtype = np.result_type(xp, w)
    step = conv_rows.images_per_block(N, winograd.bytes_per_image(g.out_hw, N, D, K, dtype.itemsize))
    count = winograd.workers(N, g.out_hw, D, K, workers.blas_held, workers.cores)
    return winograd.correlate(xp, w, bias, relu, step, count, blas_held=workers.blas_held, fill=fill,
                              flipped=flipped)


def _input_gradient(dout, w, g: Geometry, padded_shape, scheme: str, workers=threads.SERIAL):
    """Gradient w.r.t. the (unpadded) input by ``scheme``, the plan's ``input_gradient`` (:func:`plan_conv`).

    For stride 1 the flipped-filter convolution, blocked like the forward
    pass, beats the tap-by-tap col2im, except for inputs shallower than
    :data:`~volnet.ops.conv_rows.SHALLOW_DEPTH`, where its matrix multiplies have only D output
    columns, too thin for BLAS: those take the compiled gather of :mod:`volnet.ops.direct_input` where it
    applies, else im2col's shares (the figures: docs/performance-log.md).
    """
    if scheme == "direct":
        return direct_input.input_gradient(dout, w, g, direct.workers(g, w.shape[3], workers),
                                           blas_held=workers.blas_held)
    if scheme == "phases":
        return direct_input.input_gradient_by_phases(dout, w, g, direct.workers(g, w.shape[3], workers),
                                                     blas_held=workers.blas_held)
    if scheme == "pointwise":
        return conv_rows.input_gradient_pointwise(dout, w, g, workers)
    if scheme == "shallow":
        return unpad_spatial(conv_rows.input_gradient_shallow(dout, w, g, padded_shape, workers), g)
    if scheme == "flipped":
        return conv_backward_input_flipped(dout, w, g, workers=workers)
    return unpad_spatial(conv_rows.input_gradient_deep(dout, w, g, padded_shape, workers), g)


def conv_backward_input_flipped(dout, w, g: Geometry, *, workers=None):
    """Input gradient as a convolution of ``dout`` with the flipped, transposed filters.

    The notes: "the backward pass for a convolution ... is also a
    convolution (but with spatially-flipped filters)". For stride S the
    gradient first spreads dout out with S-1 zeros between its entries
    (:func:`conv_backward` uses this for stride 1 only: for larger strides
    the zeros make it S*S times more work than col2im). ``workers`` as in :func:`conv_forward`.
    """
    N, D, K = g.in_shape[0], g.in_shape[3], w.shape[3]
    (Ho, Wo), (Sh, Sw) = g.out_hw, g.stride
    if (Sh, Sw) != (1, 1):
        spread = np.zeros((N, (Ho - 1) * Sh + 1, (Wo - 1) * Sw + 1, K), dtype=dout.dtype)
        spread[:, ::Sh, ::Sw] = dout
        dout = spread
    flipped_g = flipped_geometry(g, K)
    workers = threads.or_alone(workers)
    padded_dout, fill = _padding(dout, flipped_g.pads, w)
    dtype = np.result_type(dout, w)
    forward = plan_conv(flipped_g, D, dtype, workers.cores, workers.blas_held, workers.split_rows).forward
    # the flip folded into Winograd's filter transform: no flipped copy of w (3x3 512 -> 512: 9.4 MB, 1.1 ms)
    if forward == "winograd":
        return _winograd(padded_dout, flipped_g, w, None, False, workers, fill, flipped=True)
    if forward == "winograd_fused":
        return _correlator(flipped_g, D, dtype, forward, False, workers, flipped=True)(padded_dout, w, None, fill)
    return _convolve(padded_dout, flipped_g, flipped_filters(w, workers), workers=workers, fill=fill)
