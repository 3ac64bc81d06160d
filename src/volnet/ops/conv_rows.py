"""CONV by im2col rows, built block by block: the fast path of :mod:`volnet.ops.conv` wherever its plan
(:func:`volnet.ops.conv.plan_conv`) takes neither Winograd nor the direct kernels.

Notation as in :mod:`volnet.ops.conv`: the padded batch ``xp (N, Hp, Wp, D)``, a geometry ``g``, filters
``(F, F, D, K)`` as rows ``(F*F*D, K)``. :func:`correlate` is ``im2row(xp) @ w_rows``; :func:`weight_gradient`
is ``rows.T @ dout``; :func:`input_gradient_deep` (col2im, tap by tap) and :func:`input_gradient_shallow`
(depth first) send ``dout @ W.T`` back to the input. Each builds the rows of a block of images at a time,
about :data:`BLOCK_BYTES` of them, and splits the batch over the network pass's threads.
"""

from __future__ import annotations

import numpy as np

from . import threads
from .window import Geometry, interleave_phases, phase_buffer_shape, tap_phase, windows

# The fast kernels build im2col rows for a block of images at a time, about
# this many bytes of them, so that the copy is still in cache when the matrix
# multiply reads it and the F*F-times-larger matrix never exists in full
# (the block sizes measured: docs/performance-log.md).
BLOCK_BYTES = 4 * 2**20

# Inputs shallower than this get their gradient through the depth-first
# scatter of :func:`input_gradient_shallow` (a tap's rows of D numbers are too
# short to stream), deeper ones tap by tap through :func:`input_gradient_deep`
# (where the two cross: docs/performance-log.md).
SHALLOW_DEPTH = 8


def correlate(xp, g: Geometry, w_rows, bias=None, relu=False, workers=threads.SERIAL, fill=None):
    """``im2row(xp) @ w_rows (+ bias)`` as ``(N*H2*W2, K)``, a block of images at a time; ``fill``, where
    given, ``fill(start, stop)`` first writes those images of ``xp`` (:func:`volnet.ops.window.pad_images`),
    in each part of the split.

    Where the rows are copied anyway, they get a last column of ones and
    the bias becomes that column's weight, so the multiply adds it for free,
    saving a pass over each block (docs/performance-log.md). Each
    block's output is rectified (``relu``) while it is still in cache.
    """
    N, (Ho, Wo), K = xp.shape[0], g.out_hw, w_rows.shape[1]
    out = np.empty((N * Ho * Wo, K), dtype=np.result_type(xp, w_rows))
    # the weights with the biases as one more row: a copy of the weights, worth it only where the batch has
    # more output positions than the weights have rows (not so at batch 1 on ResNet's 4x4x512 layers,
    # where the copy took as long as the multiply)
    ones = bias is not None and N * Ho * Wo > w_rows.shape[0]
    with_bias = np.concatenate([w_rows, bias[None].astype(w_rows.dtype)]) if ones else None

    def correlate_part(start, stop):
        blocks = _row_blocks(xp, g, ones_column=ones, part=(start, stop))
        yield  # allocated (see threads.split)
        if fill:
            fill(start, stop)
        for images, rows in blocks:
            block = out[_positions(images, g)]
            if rows.shape[1] > w_rows.shape[0]:
                np.matmul(rows, with_bias, out=block)
            else:
                np.matmul(rows, w_rows, out=block)
                if bias is not None:
                    block += bias
            if relu:
                np.maximum(block, 0, out=block)

    workers.split(correlate_part, N, workers.for_multiply_adds(out.size * w_rows.shape[0], N))
    return out


def images_per_block(N: int, bytes_per_image: int) -> int:
    """How many images make about :data:`BLOCK_BYTES` (at least one, at most N)."""
    return max(1, min(N, BLOCK_BYTES // max(1, bytes_per_image)))


def _image_blocks(start: int, stop: int, step: int) -> list[slice]:
    """Consecutive blocks of ``step`` of the images ``start..stop-1`` (the last may be shorter)."""
    return [slice(n, min(stop, n + step)) for n in range(start, stop, step)]


def _positions(images: slice, g: Geometry) -> slice:
    """The rows of ``(N*H2*W2, ...)`` matrices that belong to a block of images."""
    per_image = g.out_hw[0] * g.out_hw[1]
    return slice(images.start * per_image, images.stop * per_image)


def _row_blocks(xp: np.ndarray, g: Geometry, ones_column: bool = False, part: tuple[int, int] | None = None):
    """An iterator of ``(images, rows)``: the im2col rows (:func:`~volnet.ops.window.im2row`) of each block.

    ``part=(start, stop)`` takes only those images (a thread's part of the
    batch, see :func:`volnet.ops.threads.split`); the image slices are the
    batch's. The rows of every block are copied into the same buffer,
    allocated now, so each must be used before the next is asked for;
    ``ones_column=True`` gives the copied rows one more column, all ones.
    Where the receptive fields already lie in memory as rows (1x1 filters,
    or filters the size of the input) the input itself is yielded, without
    a copy (and without the ones).
    """
    start, stop = part or (0, xp.shape[0])
    view = windows(xp[start:stop], g)
    N, Ho, Wo, Fh, Fw, D = view.shape
    columns = Fh * Fw * D
    if view.flags.c_contiguous:
        return iter([(slice(start, stop), view.reshape(N * Ho * Wo, columns))])
    width = columns + ones_column
    step = images_per_block(N, Ho * Wo * width * view.itemsize)
    if D == 1:
        buffer = np.empty((width, step, Ho, Wo), dtype=xp.dtype)
        buffer[columns:] = 1
        return _tap_blocks(xp, g, buffer, _image_blocks(start, stop, step))
    buffer = np.empty((step * Ho * Wo, width), dtype=xp.dtype)
    buffer[:, columns:] = 1
    return _copied_blocks(view, start, buffer, _image_blocks(start, stop, step))


def _tap_blocks(xp, g: Geometry, buffer, blocks):
    """:func:`_copied_blocks` for an input one channel deep: the rows' transpose, the notes' ``X_col``, built
    one filter tap at a time, each tap a row of ``buffer (columns, images, H2, W2)`` copied from runs of W2
    numbers; the rows are its transposed view, which BLAS reads as it is.

    Copying the windows themselves moves runs of only F numbers here, several times slower than the taps'
    runs of W2 (docs/performance-log.md).
    """
    (Fh, Fw), (Sh, Sw), (dh, dw) = g.size, g.stride, g.dilation
    Ho, Wo = g.out_hw
    for images in blocks:
        n = images.stop - images.start
        columns = buffer[:, :n]
        for u in range(Fh):
            for v in range(Fw):
                np.copyto(columns[u * Fw + v], xp[images, u * dh: u * dh + (Ho - 1) * Sh + 1: Sh,
                                                  v * dw: v * dw + (Wo - 1) * Sw + 1: Sw, 0])
        yield images, columns.reshape(len(buffer), n * Ho * Wo).T


def _copied_blocks(view, first: int, buffer, blocks):
    """Copy each block's receptive fields into the buffer's leading columns; yield ``(images, rows)``.

    ``view`` holds the fields of the part's images, the first of which is image ``first`` of the batch.
    """
    _, Ho, Wo, Fh, Fw, D = view.shape
    for images in blocks:
        rows = buffer[: (images.stop - images.start) * Ho * Wo]
        np.copyto(rows[:, : Fh * Fw * D].reshape(-1, Ho, Wo, Fh, Fw, D),
                  view[images.start - first: images.stop - first])
        yield images, rows


def weight_gradient(dout_rows, xp, g: Geometry, workers=threads.SERIAL):
    """``(dw, db)``: ``dw = rows.T @ dout`` ``(F*F*D, K)``, accumulated over blocks of images, and db.

    db, the column sums of dout, comes out of the same multiply as the last
    row, from the im2col rows' column of ones (where the rows are copied).
    """
    (Fh, Fw), D, K = g.size, xp.shape[3], dout_rows.shape[1]
    columns = Fh * Fw * D

    def weight_gradient_part(start, stop):
        grads = np.zeros((columns + 1, K), dtype=np.result_type(xp, dout_rows))
        blocks = _row_blocks(xp, g, ones_column=True, part=(start, stop))
        yield  # allocated (see threads.split)
        with_ones = False
        for images, rows in blocks:
            grads[: rows.shape[1]] += rows.T @ dout_rows[_positions(images, g)]
            with_ones = rows.shape[1] > columns
        if not with_ones:
            positions = dout_rows[_positions(slice(start, stop), g)]
            grads[columns] = np.ones(len(positions), dtype=positions.dtype) @ positions  # a column sum, in BLAS
        return grads

    count = workers.for_multiply_adds(dout_rows.size * columns, xp.shape[0])
    grads, *others = workers.split(weight_gradient_part, xp.shape[0], count)
    for part in others:
        grads += part
    return grads[:columns], grads[columns]


def input_gradient_deep(dout, w, g: Geometry, padded_shape, workers=threads.SERIAL):
    """Gradient w.r.t. the padded input: col2im of ``dout @ W.T``, never built whole.

    Tap (u, v) of output position (i, j) read input row ``i*S + u*dilation``.
    Split the input rows by their remainder mod S (the stride's *phases*):
    then every tap writes one shifted, unstrided block of one phase buffer
    (:func:`~volnet.ops.window.tap_phase`), so the scatter is F*F plain
    block additions, and the phases are interleaved once at the end. Tap
    (u, v)'s share is ``dout @ w[u, v].T``, added as one block.

    Phase buffers are ``(Sh, Sw, N, Hp/Sh, Wp/Sw, D)``, depth last: every
    addition streams whole rows of W2*D numbers.
    """
    N, D, K = padded_shape[0], padded_shape[3], w.shape[3]
    (Ho, Wo), (Fh, Fw) = g.out_hw, g.size
    dtype = np.result_type(dout, w)
    phases = np.zeros(phase_buffer_shape(g, padded_shape), dtype=dtype)

    def scatter_part(start, stop):  # each part adds to its own images' phases only
        step = images_per_block(stop - start, Ho * Wo * (K + D) * dtype.itemsize)
        share = np.empty((step * Ho * Wo, D), dtype=dtype)
        yield  # allocated (see threads.split)
        for images in _image_blocks(start, stop, step):
            n = images.stop - images.start
            dout_rows = dout[images].reshape(-1, K)
            share_rows = share[: n * Ho * Wo]
            for u in range(Fh):
                for v in range(Fw):
                    np.matmul(dout_rows, w[u, v].T, out=share_rows)
                    a, b, rows, cols = tap_phase(g, u, v)
                    phases[a, b, images, rows, cols] += share_rows.reshape(n, Ho, Wo, D)

    workers.split(scatter_part, N, workers.for_multiply_adds(dout.size * Fh * Fw * D, N))
    return interleave_phases(phases, padded_shape)


def pointwise_outputs(g: Geometry) -> tuple[slice, slice]:
    """The output rows and columns of a 1x1 CONV whose pixel lies in its unpadded input (the others read
    padding): output (i, j) reads input (i*Sh - top, j*Sw - left)."""
    (Ho, Wo), (Sh, Sw), (top, _, left, _) = g.out_hw, g.stride, g.pads
    H, W = g.in_shape[1:3]
    return tuple(slice(-(-pad // stride), min(size, (extent - 1 + pad) // stride + 1))
                 for size, stride, pad, extent in ((Ho, Sh, top, H), (Wo, Sw, left, W)))


def input_gradient_pointwise(dout, w, g: Geometry, workers=threads.SERIAL):
    """dx ``(N, H, W, D)`` of a 1x1 CONV (any stride and padding, undilated) from ``dout (N, H2, W2, K)``.

    A 1x1 filter reads each input pixel at most once, so dx is ``dout @ W.T`` written to every S-th pixel
    (:func:`pointwise_outputs`) and zero elsewhere: no phase buffers, their interleaving or the crop that
    col2im's general scatter needs (ResNet's 1x1/2 projection 32x32x64->128 at batch 32: dx 2.7 -> 1.0 ms;
    docs/performance-log.md). Each part of the batch zeroes its own images and writes its products.
    """
    N, H, W, D = g.in_shape
    (Sh, Sw), (top, _, left, _), K = g.stride, g.pads, w.shape[3]
    rows, columns = pointwise_outputs(g)
    h, wd = rows.stop - rows.start, columns.stop - columns.start
    dtype = np.result_type(dout, w)
    weights_t = w[0, 0].T.astype(dtype, copy=False)
    dx = np.empty((N, H, W, D), dtype=dtype)
    # where the products go: the input pixels of those outputs
    targets = dx[:, rows.start * Sh - top::Sh, columns.start * Sw - left::Sw][:, :h, :wd]

    def scatter_part(start, stop):
        step = images_per_block(stop - start, h * wd * (K + D) * dtype.itemsize)
        share = np.empty((step * h * wd, D), dtype=dtype)
        yield  # allocated (see threads.split)
        dx[start:stop] = 0
        for images in _image_blocks(start, stop, step):
            n = images.stop - images.start
            block = share[: n * h * wd]
            np.matmul(dout[images, rows, columns].reshape(-1, K), weights_t, out=block)
            targets[images] = block.reshape(n, h, wd, D)

    workers.split(scatter_part, N, workers.for_multiply_adds(N * h * wd * K * D, N))
    return dx


def input_gradient_shallow(dout, w, g: Geometry, padded_shape, workers=threads.SERIAL):
    """col2im for a shallow input (D < :data:`SHALLOW_DEPTH`, e.g. RGB images), depth first.

    One multiply per block gives ``W @ dout.T``, every tap's share laid out
    ``(D, n, H2, W2)``; phase buffers ``(Sh, Sw, D, n, Hp/Sh, Wp/Sw)`` put the
    depth first too, so each addition streams rows of W2 numbers rather
    than D. (Per-tap multiplies with only D output columns, and additions
    D numbers long, are what make the deep version slow here.)
    """
    N, D, K = padded_shape[0], padded_shape[3], w.shape[3]
    (Ho, Wo), (Fh, Fw) = g.out_hw, g.size
    dtype = np.result_type(dout, w)
    w_rows = w.reshape(-1, K)
    dxp = np.empty(padded_shape, dtype=dtype)

    def scatter_part(start, stop):  # each block allocates its own shares and phases
        yield
        step = images_per_block(stop - start, Ho * Wo * Fh * Fw * D * dtype.itemsize)
        for images in _image_blocks(start, stop, step):
            n = images.stop - images.start
            shares = (w_rows @ dout[images].reshape(-1, K).T).reshape(Fh, Fw, D, n, Ho, Wo)
            Sh, Sw, _, Hs, Ws, _ = phase_buffer_shape(g, (n, *padded_shape[1:]))
            phases = np.zeros((Sh, Sw, D, n, Hs, Ws), dtype=dtype)
            for u in range(Fh):
                for v in range(Fw):
                    a, b, rows, cols = tap_phase(g, u, v)
                    phases[a, b, :, :, rows, cols] += shares[u, v]
            dxp[images] = interleave_phases(phases.transpose(0, 1, 3, 4, 5, 2), dxp[images].shape)

    workers.split(scatter_part, N, workers.for_multiply_adds(dout.size * Fh * Fw * D, N))
    return dxp
