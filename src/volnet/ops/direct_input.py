"""Compiled input gradients: of a shallow stride-1 CONV (an RGB or grey first layer), register-blocked
(:func:`input_gradient`), and of a strided CONV by its stride phases (:func:`input_gradient_by_phases`, on
:mod:`volnet.ops.direct`'s forward kernel).

im2col's input gradient for an input only D channels deep (``conv_rows.input_gradient_shallow``) multiplies
``W @ dout.T`` into every tap's share of dx, ``F*F*D`` values per output position, and then adds the shares
up tap by tap: for a 5x5 layer of 3 channels that is 75 numbers written and read again per position, for
3 kept. This kernel gathers instead: each dx value sums, over the taps ``(u, v)`` whose window holds it
and over the K filters, dout times the weight that carried it forward::

    dx[n, h, w, d] = sum over (u, v, k) of dout[n, h + P - u, w + P - v, k] * w[u, v, d, k]

(the notes' "convolution with spatially-flipped filters", read where dout lies: no padded copy of dout).
The sum over k runs along the filters, contiguous in both dout and the weights, in vectors of
:data:`LANES`; a tile of ``PW`` dx pixels x all D channels is accumulated in registers (as
:mod:`volnet.ops.direct` does, with its compile flags), each lane vector summed at the end. Away from the
borders one filter row's taps of every column and filter meet one contiguous run of a dout row (the
weights' columns flipped, a small copy); at the borders, taps whose dout row or column lies outside dout
are skipped, so dout needs no padding. On the Intel Xeon, against im2col's shares: 5x5 32x32x3->64 at
batch 64 3.9 against 6.5 ms, LeNet's first layer 1.0 against 1.8, 3x3 32x32x3->32 1.1 against 2.2.

Which layers take it is :func:`applies` (in :func:`volnet.ops.conv.plan_conv`), and
:func:`applies_by_phases` for the phases; the batch splits over the cores (:func:`volnet.ops.direct.workers`),
each image's dx written by one thread.
"""

from __future__ import annotations

import numpy as np

from . import direct, threads, tiled
from .conv_rows import SHALLOW_DEPTH
from .window import pad_images_call

LANES = 16  # the filters summed per vector step: one AVX-512 register of float32 (two of float64)
# Accumulators (vectors of LANES values) in the tile, pixels x channels, per instruction set, (float32, float64):
# LLVM unrolls a tile of 14 x 16 values fully (as the forward's 7 x 32), and keeps it in AVX-512's registers (in
# float64 too: 28 of its 32); at 8 x 3 x 16 it left the loops rolled and ran 6x slower. AVX2 holds a float32
# vector in two of its 16 registers, a float64 one in four: compiled for AVX2 on the AMD EPYC Zen 4, one thread,
# batch 64, 14 vectors against 7: 5x5 32x32x3->64 12.4 against 8.8 ms, LeNet's 28x28x1->16 2.5 against 1.2; in
# float64 7 vectors (28 registers) spilled, 5x5 32x32x3->64 on two threads 32.6 ms against im2col's 23.0. A tile
# of one pixel ran 5x slower on both sets (see applies).
TILE_VECTORS = {"avx512": (14, 14), "avx2": (7, 3), "portable": (3, 1)}
# Strided layers whose input gradient goes by phases (input_gradient_by_phases): up to this depth x filters.
# Against col2im (the Intel Xeon, two threads, 3x3/2, batch 32): 32x32x64->128 6.96 -> 4.21 ms, 16x16x128->256
# 5.29 -> 4.00; 8x8x256->512 lost, 5.08 -> 10.5 (each phase's sub-filters, 2 MB with rows 2 KB apart, no
# longer stay in cache between the kernel's tiles).
PHASES_MAX_MULTIPLY = 128 * 256


def applies(g, depth: int, filters: int, dtype) -> bool:
    """Whether the input gradient takes :func:`input_gradient`: where :func:`volnet.ops.direct.applies`'
    conditions on the host and dtype hold, an input of fewer than :data:`volnet.ops.conv_rows.SHALLOW_DEPTH`
    channels whose tile holds at least two pixels (:func:`tile`), stride 1, and filters a whole number of
    :data:`LANES`."""
    return (depth < SHALLOW_DEPTH and tile(depth, dtype) >= 2 and g.stride == (1, 1) and filters % LANES == 0
            and direct.measured(g, dtype, "first"))


def tile(depth: int, dtype) -> int:
    """Pixels in the register tile of :func:`input_gradient` for ``depth`` input channels of ``dtype``
    (:data:`TILE_VECTORS` of this host's instruction set)."""
    vectors = TILE_VECTORS[direct.isa()][np.dtype(dtype).itemsize == 8]
    return max(1, vectors // depth)


def _input_gradient_source(PW: int, DB: int):
    """The gather kernel with a tile of ``PW`` pixels x ``DB`` channels (closure constants; DB = D)."""
    T = PW * DB * LANES

    def gather(dout, w, runs, top, left, dx, first, last):  # pragma: no cover - compiled
        # dout (N, Ho, Wo*K): each row's (column, filter) values in one run; w (Fh, Fw, D, K); runs (Fh, D, Fw*K):
        # runs[u, d] is w[u, ::-1, d, :] flattened, so that a dx pixel's taps of filter row u, all columns v
        # and filters k, meet one contiguous run of a dout row. Output (i, j) read input (i - top + u, ...).
        Fh, Fw, _, K = w.shape
        _, H, W, _ = dx.shape
        Ho, Wo = dout.shape[1], dout.shape[2] // K
        run = Fw * K
        acc = tiled.carray(tiled.stack_array(T, dx.dtype), T)
        for n in range(first, last):
            for h in range(H):
                # the taps u whose dout row i = h + top - u lies in dout
                u_first, u_stop = max(0, h + top - Ho + 1), min(Fh, h + top + 1)
                for w0 in range(0, W, PW):
                    for t in range(T):
                        acc[t] = 0
                    start = w0 + left - (Fw - 1)  # the dout column where the tile's first pixel's taps start
                    if start >= 0 and start + PW - 1 + Fw <= Wo and w0 + PW <= W:  # no tap past dout
                        for u in range(u_first, u_stop):
                            i = h + top - u
                            for e in range(0, run, LANES):
                                for p in range(PW):
                                    for d in range(DB):
                                        for q in range(LANES):
                                            acc[(p * DB + d) * LANES + q] += (
                                                dout[n, i, tiled.unsigned((start + p) * K + e + q)]
                                                * runs[u, d, e + q])
                    else:  # a border tile, or a row's last: taps past dout (and pixels past dx) are skipped
                        for u in range(u_first, u_stop):
                            i = h + top - u
                            for v in range(Fw):
                                j0 = w0 + left - v  # the dout column of the tile's first pixel
                                if j0 >= 0 and j0 + PW <= Wo and w0 + PW <= W:  # this tap: every pixel
                                    for k0 in range(0, K, LANES):
                                        for p in range(PW):
                                            for d in range(DB):
                                                for q in range(LANES):
                                                    acc[(p * DB + d) * LANES + q] += (
                                                        dout[n, i, tiled.unsigned((j0 + p) * K + k0 + q)]
                                                        * w[u, v, d, k0 + q])
                                    continue
                                for k0 in range(0, K, LANES):
                                    for p in range(PW):
                                        if 0 <= j0 + p < Wo and w0 + p < W:
                                            for d in range(DB):
                                                for q in range(LANES):
                                                    acc[(p * DB + d) * LANES + q] += (
                                                        dout[n, i, tiled.unsigned((j0 + p) * K + k0 + q)]
                                                        * w[u, v, d, k0 + q])
                    for p in range(PW):  # (constant indices into acc: see direct._forward_source's tail)
                        if w0 + p < W:
                            for d in range(DB):
                                total = acc[(p * DB + d) * LANES]
                                for q in range(1, LANES):
                                    total += acc[(p * DB + d) * LANES + q]
                                dx[n, h, w0 + p, d] = total

    return gather


def input_gradient(dout: np.ndarray, w: np.ndarray, g, workers: int = 1, *, blas_held: bool = False):
    """dx ``(N, H, W, D)`` of the stride-1 CONV of geometry ``g`` with weights ``w (F, F, D, K)``, from
    ``dout (N, H2, W2, K)``; the batch split over ``workers`` threads."""
    N, H, W, D = g.in_shape
    dtype = np.result_type(dout, w)
    PW = tile(D, dtype)
    kernel = tiled.kernel(_input_gradient_source, PW, D)
    Fh, Fw, _, K = w.shape
    rows = np.ascontiguousarray(dout, dtype=dtype).reshape(N, dout.shape[1], -1)
    weights = np.ascontiguousarray(w, dtype=dtype)
    runs = np.ascontiguousarray(weights[:, ::-1].transpose(0, 2, 1, 3)).reshape(Fh, D, Fw * K)
    dx = np.empty((N, H, W, D), dtype=dtype)
    top, _, left, _ = g.pads

    threads.split_kernel(kernel, (rows, weights, runs, top, left, dx), N, workers, blas_held=blas_held)
    return dx


def applies_by_phases(g, depth: int, filters: int, dtype) -> bool:
    """Whether the input gradient takes :func:`input_gradient_by_phases`: where :func:`volnet.ops.direct.applies`'
    conditions on the host and dtype hold, a strided layer at least
    :data:`volnet.ops.conv_rows.SHALLOW_DEPTH` deep with filters larger than its stride, whose sub-filters
    (:data:`PHASES_MAX_MULTIPLY`) the forward kernel runs faster than im2col's col2im."""
    (Sh, Sw), (Fh, Fw) = g.stride, g.size
    return (g.stride != (1, 1) and depth >= SHALLOW_DEPTH and Fh > Sh and Fw > Sw
            and depth * filters <= PHASES_MAX_MULTIPLY and direct.measured(g, dtype, "strided"))


def axis_phases(size: int, filter_size: int, stride: int, pad: int) -> list[tuple[int, int, int, int]]:
    """The stride phases of one axis of a strided CONV's input: ``(first tap, taps, offset, count)`` for each
    phase ``p`` in ``range(stride)``: the input positions ``x = p + a*stride`` (``count`` of them) receive
    gradient from the taps ``first + m*stride`` (``m < taps``), tap m from dout position ``a + offset - m``."""
    phases = []
    for phase in range(stride):
        first = (phase + pad) % stride
        taps = max(0, -(-(filter_size - first) // stride))
        phases.append((first, taps, (phase + pad - first) // stride, -(-(size - phase) // stride)))
    return phases


def phase_layout(g):
    """``(rows, columns, pads)`` of :func:`input_gradient_by_phases`: each axis's :func:`axis_phases`, and the
    zero padding ``(top, bottom, left, right)`` of dout inside which every phase's window lies, from the
    lowest position a phase reads (``offset - taps + 1``) to the highest (``count - 1 + offset``)."""
    (N, H, W, _), (Ho, Wo), (Sh, Sw) = g.in_shape, g.out_hw, g.stride
    top, _, left, _ = g.pads
    rows, columns = axis_phases(H, g.size[0], Sh, top), axis_phases(W, g.size[1], Sw, left)
    pads = []
    for phases, size in ((rows, Ho), (columns, Wo)):
        reached = [(offset - taps + 1, count + offset) for _, taps, offset, count in phases if taps]
        pads += [max([0] + [-low for low, _ in reached]), max([0] + [high - size for _, high in reached])]
    return rows, columns, tuple(pads)


def workspace_by_phases(g, filters: int, itemsize: int) -> int:
    """Bytes :func:`input_gradient_by_phases` allocates beside dx: the padded dout and each phase's padded
    sub-filters."""
    (N, _, _, D), (Ho, Wo), K = g.in_shape, g.out_hw, filters
    rows, columns, (top, bottom, left, right) = phase_layout(g)
    weights = sum(direct.padded_weights_bytes(taps_h * taps_w * K, D, itemsize)
                  for _, taps_h, _, count_h in rows for _, taps_w, _, count_w in columns
                  if taps_h and taps_w and count_h > 0 and count_w > 0)
    return N * (Ho + top + bottom) * (Wo + left + right) * K * itemsize + weights


def input_gradient_by_phases(dout: np.ndarray, w: np.ndarray, g, workers: int = 1, *,
                             blas_held: bool = False) -> np.ndarray:
    """dx ``(N, H, W, D)`` of the strided CONV of geometry ``g`` (undilated) with weights ``w (F, F, D, K)``,
    from ``dout (N, H2, W2, K)``, as ``Sh*Sw`` stride-1 correlations of dout, one per stride phase.

    With stride S an input row ``h = p + a*S`` receives gradient only from the filter rows ``u`` with
    ``(h + top - u) % S == 0`` (:func:`axis_phases`): for each phase ``(p, q)`` of rows and columns, dx at
    ``(p + a*S, q + b*S)`` is dout correlated (stride 1) with the sub-filter of those taps, flipped and
    transposed to ``(taps, taps, K, D)``. The forward kernel (:mod:`volnet.ops.direct`) computes each phase
    from one zero-padded copy of dout and writes it into every S-th row and column of dx: the S*S
    phases together do the forward pass's multiply-adds, without col2im's ``dout @ W.T`` of F*F*D columns
    written and added up tap by tap (the figures: docs/performance-log.md). Phases no tap reaches (a filter
    smaller than its stride) are zero. The batch splits over ``workers`` threads, each padding its own images.
    """
    N, H, W, D = g.in_shape
    (Ho, Wo), (Sh, Sw), K = g.out_hw, g.stride, w.shape[3]
    dtype = np.result_type(dout, w)
    rows, columns, pads = phase_layout(g)
    padded = np.empty((N, Ho + pads[0] + pads[1], Wo + pads[2] + pads[3], K), dtype=dtype)
    runs = padded.reshape(N, padded.shape[1], -1)
    dx = np.empty((N, H, W, D), dtype=dtype)
    calls = []  # (kernel, sub-filter taps, bias, window) of each phase some tap reaches
    empty = []  # the phases none reaches, zero
    for p, (first_row, taps_h, offset_h, count_h) in enumerate(rows):
        for q, (first_column, taps_w, offset_w, count_w) in enumerate(columns):
            if not (taps_h and taps_w and count_h > 0 and count_w > 0):
                empty.append((p, q))
                continue
            sub = w[first_row::Sh][:taps_h][::-1, first_column::Sw][:, :taps_w][:, ::-1].transpose(0, 1, 3, 2)
            taps, bias = direct.padded_weights(sub, None, dtype)
            window = (count_h, count_w, offset_h - taps_h + 1 + pads[0], (offset_w - taps_w + 1 + pads[2]) * K,
                      p, Sh, q, Sw, pads[0], pads[0] + Ho, 1)
            calls.append((direct.forward_kernel(D, dtype, count_w), taps, bias, window))
    floor = dtype.type(-np.inf)

    def phases_calls(start, stop):
        zeros = [(_zero_phases, (dx, empty, Sh, Sw, start, stop))] if empty else []
        return [pad_images_call(dout, padded, pads, start, stop), *zeros,
                *((kernel, (runs, taps, bias, floor, 1, K, dx, start, stop, window))
                  for kernel, taps, bias, window in calls)]

    threads.split_compiled(phases_calls, N, workers, blas_held=blas_held)
    return dx


def _zero_phases(dx, phases, Sh, Sw, start, stop):
    for p, q in phases:
        dx[start:stop, p::Sh, q::Sw] = 0
