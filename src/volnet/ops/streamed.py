"""A CONV whose output is a few pixels and whose weights are many: the weights streamed once, in taps.

At batch 1 ResNet's last layers give 4x4 or 8x8 output pixels from 2.4-9.4 MB of weights. Their receptive
fields (im2col's rows, ``M x taps``, M the output pixels) times the weights (``taps x K``) is then a multiply
whose cost is reading the weights: im2col's GEMM packs them first (a second pass over them), and the direct
forward reads them again for each output row. Here Numba's threads split the *taps*: each streams its
contiguous share of the weight rows once, a block of :data:`TAP_BLOCK` rows at a time, into a register tile of
8 pixels x 32 filters (the direct kernels' tile, :mod:`volnet.ops.tiled`), keeping its partial sums of every
output in a buffer; the sums of the parts, the bias and the ReLU follow. Each block is first read in order,
a value a cache line: in a network pass the weights come from memory, and the tile's walk down the block's
columns, a line from each row, left the hardware's prefetcher behind (ResNet-18 at batch 1: 4x4x512->512
915 -> 586 us a layer). Measured in resnet18-cifar's pass at batch 1 on the Intel Xeon's two cores, against
im2col on Numba's threads: 3x3 4x4x512->512 (9.4 MB) 948 -> 586 us, 3x3/2 8x8x256->512 569 -> 332,
3x3 8x8x256->256 605 -> 411 (docs/performance-log.md).
"""

from __future__ import annotations

import numpy as np

from . import direct, tiled
from .window import im2row

# Layers of at most this many output pixels (a batch's) whose weights are at least MIN_WEIGHT_BYTES take it, at
# batch 1, before the direct forward split by rows (volnet.ops.conv_plan). Measured at batch 1 on the Intel Xeon's
# two cores, the weights cycled through 45 MB as in a network's pass: 3x3/2 16x16x128->256 (1.2 MB) 267 us against
# the direct forward's 468 and im2col's 304, 3x3 8x8x128->256 260 / 448 / 288, 8x8x128->128 (590 KB) 155 / 194 /
# 184, 1x1/2 8x8x256->512 (512 KB) 72 / 170 / 85, 3x3/2 16x16x64->128 (295 KB) 105 / 106 / 117; lost: 3x3 8x8x64->64
# (147 KB) 72 / 61 / 83. resnet18-cifar's batch-1 pass 0.97x (docs/performance-log.md, issue 23).
MAX_POSITIONS = 64
MIN_WEIGHT_BYTES = 2**18
# Weight rows (taps) a block: read in order, then run through by every tile (512 KB for 512 filters, in L2).
# In ResNet-18's pass at batch 1, 4x4x512->512: 32 rows 652 us, 64 608, 128 588, 256 565-586, 512 654, 1024 859.
TAP_BLOCK = 256


def applies(g, depth: int, filters: int, dtype, split_rows: bool) -> bool:
    """Whether a layer of geometry ``g`` takes :func:`correlate`: one image's output split over Numba's
    threads (``split_rows``), at most :data:`MAX_POSITIONS` output pixels, weights of at least
    :data:`MIN_WEIGHT_BYTES`, a float dtype and an instruction set whose tiles were measured."""
    weight_bytes = g.size[0] * g.size[1] * depth * filters * np.dtype(dtype).itemsize
    return (split_rows and g.in_shape[0] * g.out_hw[0] * g.out_hw[1] <= MAX_POSITIONS
            and weight_bytes >= MIN_WEIGHT_BYTES and np.dtype(dtype) in (np.float32, np.float64)
            and direct.measured_here("streamed"))


def correlate(xp: np.ndarray, g, w: np.ndarray, bias=None, relu: bool = False, parts: int = 1) -> np.ndarray:
    """``(N, H2, W2, K)``: the padded batch ``xp`` correlated with ``w (F, F, D, K)`` as geometry ``g`` says
    (any stride, dilation and crop), plus ``bias`` (None: none), rectified where ``relu``; the taps split
    into ``parts`` on Numba's threads."""
    K, dtype = w.shape[3], np.result_type(xp, w)
    fields = im2row(xp.astype(dtype, copy=False), g)
    # in place wherever they fill whole tiles: weights of more than aligned.ALIGNED_MAX_BYTES lie where malloc
    # put them, 16 bytes into a page, and a copy to align them would be a second pass over them
    taps, bias = direct.tiled_weights(w, bias, dtype, require_aligned=False)
    PW, KB = _tile(K, dtype, len(fields))
    parts = max(1, min(parts, fields.shape[1]))  # each part at least one tap, so that each writes its sums
    partial = np.empty((parts, len(fields), taps.shape[2]), dtype=dtype)
    out = np.empty((len(fields), K), dtype=dtype)
    kernel = tiled.kernel(_streamed_source, PW, KB, parallel=parts > 1)
    kernel(fields, taps.reshape(-1, taps.shape[2]), bias, dtype.type(0 if relu else -np.inf), partial, out,
           TAP_BLOCK, np.zeros(parts, dtype))
    return out.reshape(g.in_shape[0], *g.out_hw, K)


def workspace(g, filters: int, itemsize: int, parts: int) -> int:
    """Bytes :func:`correlate` allocates beside its output: the receptive fields, each part's sums and, where
    the filters do not fill whole tiles, the weights copied to them (:func:`volnet.ops.direct.padded_weights`)."""
    (Fh, Fw), (N, _, _, D) = g.size, g.in_shape
    positions, padded = N * g.out_hw[0] * g.out_hw[1], direct.padded_filters(filters, itemsize)
    copy = direct.padded_weights_bytes(Fh * Fw * D, filters, itemsize) if padded != filters else 0
    return (positions * Fh * Fw * D + parts * positions * padded) * itemsize + copy


def _tile(filters: int, dtype, positions: int | None = None) -> tuple[int, int]:
    """The direct kernels' tile (:func:`volnet.ops.direct.tile`) for rows of ``positions`` pixels."""
    return direct.tile(filters, dtype, positions)


def _streamed_source(PW: int, KB: int):
    """The kernel with a ``PW x KB`` tile (closure constants)."""
    T = PW * KB
    KH, KQ = max(1, KB // 16), min(KB, 16)  # the filters as KH x KQ: LLVM unrolls 16 iterations fully, not 32

    def streamed(a, w, bias, floor, partial, out, TB, sink):  # pragma: no cover - compiled
        # a (M, taps) receptive fields, w (taps, Kp), partial (parts, M, Kp), out (M, K): part p sums the
        # products of its share of the taps into partial[p], a tap block of TB rows of w at a time, each block
        # first read in order (a value a cache line, summed into sink[p] so that the reads stay); then
        # out = the bias plus the parts' sums, at least floor
        M, taps = a.shape
        Kp, K = w.shape[1], out.shape[1]
        parts = partial.shape[0]
        for part in tiled.prange(parts):
            first, stop = part * taps // parts, (part + 1) * taps // parts
            acc = tiled.carray(tiled.stack_array(T, a.dtype), T)
            for t0 in range(first, stop, TB):
                t1 = min(stop, t0 + TB)
                touched = 0.0
                for t in range(t0, t1):
                    for k in range(0, Kp, KQ):
                        touched += w[t, k]
                sink[part] += touched
                for k0 in range(0, Kp, KB):
                    for p0 in range(0, M, PW):
                        for p in range(PW):
                            row = min(p0 + p, M - 1)
                            for h in range(KH):
                                for q in range(KQ):
                                    acc[p * KB + h * KQ + q] = (0.0 if t0 == first
                                                                else partial[part, row, k0 + h * KQ + q])
                        for t in range(t0, t1):
                            tap = tiled.unsigned(t)
                            for p in range(PW):
                                x = a[tiled.unsigned(min(p0 + p, M - 1)), tap]
                                for h in range(KH):
                                    for q in range(KQ):
                                        acc[p * KB + h * KQ + q] += x * w[tap, tiled.unsigned(k0 + h * KQ + q)]
                        for p in range(PW):  # (constant indices into acc: see direct._forward_source's tail)
                            if p0 + p < M:
                                for h in range(KH):
                                    for q in range(KQ):
                                        partial[part, p0 + p, k0 + h * KQ + q] = acc[p * KB + h * KQ + q]
        for m in range(M):
            for k in range(K):
                total = bias[k]
                for part in range(parts):
                    total += partial[part, m, k]
                out[m, k] = tiled.at_least(total, floor)

    return streamed
