"""The direct weight gradient: :mod:`volnet.ops.direct`'s forward kernel turned around, compiled with Numba.

A tile of ``PE`` filter taps (of the whole filter, ``(u, v, d)`` flattened) x ``KB`` filters accumulates in
registers over the positions of each image::

    dw[t, k+q] += xp[n, i*S + u_t, j*S + v_t, d_t] * dout[n, i, j, k+q]

compiled as the forward kernels are (:mod:`volnet.ops.tiled`). A tile sums only the positions whose fields its
taps read inside the input, not its padding: the rows, and the columns where its taps lie on one filter row (LeNet's
14x14x16->32 on one core of the AMD EPYC Zen 4, interleaved: 3.45-3.59 -> 3.14-3.29 ms). Which layers take it is
:func:`applies_to_weight_gradient`, decided by measurement; :mod:`volnet.ops.conv_plan` reads it.
"""

from __future__ import annotations

import numpy as np

from . import direct, threads, tiled
from .direct import MAX_MULTIPLY, MIN_DEPTH, SHALLOW_MAX_FILTERS, lenet_sized, measured, padded_filters, tile
from .norm_kernels import column_sums

# The weight gradient's tile: this many filter taps (of the whole filter, (u, v, d) flattened) x the
# forward's filters, (taps of a tile of the full width, taps of one half as wide). 14 x 32 float32 fills 28 of
# AVX-512's 32 registers; 25 and 27 taps (5x5x1, 3x3x3 first layers) take two passes over the positions
# (28 x 16 for LeNet's 16 filters ran 2.6x slower than 14 x 16). AVX2's 16 registers hold 2 x 32 (8 of sums)
# or 4 x 16: compiled for AVX2 on the AMD EPYC Zen 4, one thread, 14x14x16->32 at batch 64 4.6 ms in 2 x 32,
# 6.0 in 3 x 32, 5.0 in 4 x 32; 28x28x1->16 0.88 in 2 x 16, 0.62 in 4 x 16.
TAP_TILES = {"avx512": (14, 14), "avx2": (2, 4), "portable": (2, 2)}

# First layers' dw reads each image's dout once per tile of taps: direct where that stays in cache (the 5x5
# and 11x11/4 first layers of 3 channels, 0.72-0.95x im2col's time on two threads, AlexNet's 55x55x96, 1.2 MB
# an image, 0.86x; LeNet's one channel 0.63x, once db no longer took NumPy's slow column sum), im2col where it
# does not (the 7x7/2 stem's 3.2 MB an image, 1.1-1.2x).
SHALLOW_DW_IMAGE_BYTES = 2**21


def tap_tile(filters: int, dtype) -> tuple[int, int]:
    """``(taps, filters)`` of :func:`weight_gradient`'s register tile (:data:`TAP_TILES`, :func:`tile`'s filters)."""
    width = tile(filters, dtype)[1]
    full, half = TAP_TILES[direct.isa()]
    return (full if width == tile(2 * width, dtype)[1] else half), width


def applies_to_weight_gradient(g, depth: int, filters: int, dtype) -> bool:
    """Whether the weight gradient takes :func:`weight_gradient`, where the direct kernels may run at all
    (:func:`volnet.ops.direct.measured`): LeNet-sized layers (:func:`volnet.ops.direct.lenet_sized`), and first
    layers of 1 to 7 channels into at most :data:`SHALLOW_MAX_FILTERS` filters whose dout is at most
    :data:`SHALLOW_DW_IMAGE_BYTES` an image."""
    (Ho, Wo), itemsize = g.out_hw, np.dtype(dtype).itemsize
    shallow = (depth < MIN_DEPTH and filters <= SHALLOW_MAX_FILTERS
               and Ho * Wo * padded_filters(filters, itemsize) * itemsize <= SHALLOW_DW_IMAGE_BYTES)
    return (shallow and measured(g, dtype, "first")) or (lenet_sized(g, depth, filters) and measured(g, dtype, "lenet"))


def workspace_weight_gradient(g, filters: int, itemsize: int, workers: int) -> int:
    """Bytes :func:`weight_gradient` allocates beside a contiguous dout, split over ``workers`` threads:
    dout with zero filters up to whole tiles (where it has none), a contiguous copy of a cropped input, each
    thread's dw and db, and the result cut from the padded filters."""
    from .workspace import padded, part_sizes

    (N, _, _, D), (Fh, Fw), (Ho, Wo), K, b = g.in_shape, g.size, g.out_hw, filters, itemsize
    shape, _, cropped = padded(g)
    Kp = padded_filters(K, b)
    dout = N * Ho * Wo * Kp * b if Kp != K else 0
    xp = N * shape[1] * shape[2] * D * b if cropped else 0
    partials = len(part_sizes(N, workers)) * (Fh * Fw * D + 1) * Kp * b
    result = Fh * Fw * D * K * b if Kp != K else 0
    return dout + xp + partials + result


def _weight_gradient_source(PE: int, KB: int):
    """The weight-gradient kernel with a tile of ``PE`` filter taps (anywhere in the filter) x ``KB`` filters."""
    T = PE * KB
    KH = max(1, KB // 16)

    def weight_gradient(x, dout, offsets, row, Sh, SD, dw, first, last, window):  # pragma: no cover - compiled
        # x (N, Hp*Wp*D): each image flat; dout (N, H2, W2, Kp); offsets (taps,): where each tap (u, v, d) lies
        # from a receptive field's first value, u*row + v*D + d; dw (taps, Kp) += this part's share. Output
        # (i, j)'s field starts at i*Sh*row + j*SD. window (D, Fw, top, bottom, left, right): the input's rows
        # and columns in x lie in [top, bottom) and [left, right), the rest is padding; each tile of taps sums
        # only the outputs whose fields its taps read inside (rows, and columns where its taps share a row)
        D, Fw, top, bottom, left, right = window
        taps, Kp = dw.shape
        _, Ho, Wo, _ = dout.shape
        Sw, row_taps = SD // D, Fw * D
        acc = tiled.carray(tiled.stack_array(T, x.dtype), T)
        for n in range(first, last):
            for t0 in range(0, taps, PE):
                t1 = min(t0 + PE, taps) - 1
                u0, u1 = t0 // row_taps, t1 // row_taps
                i_first, i_stop = max(0, (top - u1 + Sh - 1) // Sh), min(Ho, (bottom - u0 + Sh - 1) // Sh)
                j_first, j_stop = 0, Wo
                if u0 == u1:
                    v0, v1 = (t0 % row_taps) // D, (t1 % row_taps) // D
                    j_first, j_stop = max(0, (left - v1 + Sw - 1) // Sw), min(Wo, (right - v0 + Sw - 1) // Sw)
                for k0 in range(0, Kp, KB):
                    for p in range(PE):
                        for q in range(KB):
                            acc[p * KB + q] = dw[min(t0 + p, taps - 1), k0 + q]
                    for i in range(i_first, i_stop):
                        for j in range(j_first, j_stop):
                            start = i * Sh * row + j * SD
                            for p in range(PE):
                                value = x[n, tiled.unsigned(start + offsets[min(t0 + p, taps - 1)])]
                                if KH == 1:
                                    for q in range(KB):
                                        acc[p * KB + q] += value * dout[n, i, j, k0 + q]
                                else:  # LLVM unrolls 16 iterations fully, not 32
                                    for h in range(KH):
                                        for q in range(16):
                                            acc[p * KB + h * 16 + q] += value * dout[n, i, j, k0 + h * 16 + q]
                    for p in range(PE):  # (constant indices into acc: see direct._forward_source's tail)
                        if t0 + p < taps:
                            for q in range(KB):
                                dw[t0 + p, k0 + q] = acc[p * KB + q]

    return weight_gradient


def weight_gradient(xp: np.ndarray, dout: np.ndarray, g, workers: int = 1, *, blas_held: bool = False):
    """``(dw, db)`` of the CONV of geometry ``g`` (undilated) on the padded batch ``xp (N, Hp, Wp, D)``:
    ``dw[u, v, d, k] = sum over (n, i, j) of xp[n, i*Sh + u, j*Sw + v, d] * dout[n, i, j, k]``, accumulated
    in a register tile of filter taps x filters per image; each of ``workers`` threads sums its own images
    into its own dw, added at the end."""
    N, Hp, Wp, D = xp.shape
    (Fh, Fw), K = g.size, dout.shape[3]
    dtype = np.result_type(xp, dout)
    PE, KB = tap_tile(K, dtype)
    Kp = padded_filters(K, dtype.itemsize)
    if Kp != K:  # zero filters up to whole tiles
        dout = np.concatenate([dout, np.zeros((*dout.shape[:3], Kp - K), dtype=dtype)], axis=3)
    dout = np.ascontiguousarray(dout, dtype=dtype)
    flat = np.ascontiguousarray(xp, dtype=dtype).reshape(N, Hp * Wp * D)
    kernel = tiled.kernel(_weight_gradient_source, PE, KB)
    Sh, Sw = g.stride
    Ho, Wo = dout.shape[1:3]
    offsets = (np.arange(Fh)[:, None] * (Wp * D) + np.arange(Fw * D)).reshape(-1)  # taps in (u, v, d) order
    top, bottom, left, right = (max(pad, 0) for pad in g.pads)
    window = (D, Fw, top, Hp - bottom, left, Wp - right)

    # Each part sums its images' db too, beside dw: after the split, on the main thread alone, db took 100 us
    # of LeNet's second CONV's 4 ms backward (the AMD EPYC Zen 4).
    sums, positions = [], dout.reshape(-1, Kp)

    def weight_gradient_calls(start, stop):
        dw_db = np.zeros((Fh * Fw * D + 1, Kp), dtype=dtype)
        sums.append(dw_db)
        return [(kernel, (flat, dout, offsets, Wp * D, Sh, Sw * D, dw_db[:-1], start, stop, window)),
                (column_sums, (positions, start * Ho * Wo, stop * Ho * Wo, dw_db[-1]))]

    threads.split_compiled(weight_gradient_calls, N, workers, blas_held=blas_held)
    total, *others = sums
    for part in others:
        total += part
    return total[:-1, :K].reshape(Fh, Fw, D, K), total[-1, :K]
