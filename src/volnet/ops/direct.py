"""Direct convolution with the output tile held in registers (register blocking), compiled with Numba.

im2col turns a CONV into one matrix multiply, but for a layer with few
channels and filters (LeNet's 16 -> 32) its copy of the receptive fields
costs as much as the multiply, and the multiply is too thin for BLAS to
run fast (Winograd F(4x4, 5x5) too: its 64 multiplies are thinner still).
A direct kernel computes each output tile where it lies, as
oneDNN's JIT kernels do: a tile of ``PW`` output pixels of one row x ``KB``
filters is accumulated in registers; per (filter tap, input channel) step
it loads ``KB`` weights (contiguous: the weights are ``(F, F, D, K)``,
filters innermost) and broadcasts one input value per pixel against them::

    acc[p, q] += xp[n, i*S + u, (j+p)*S + v, d] * w[u, v, d, k+q]

What that takes in Numba (each point measured, docs/performance-log.md):

* the accumulators in a local array of compile-time-constant size
  (``tiled.stack_array``, on the stack, which LLVM then keeps in
  registers) and every tile loop of constant trip count, so LLVM unrolls
  them fully; the tile sizes are closure constants of each compiled kernel;
* LLVM's SLP vectoriser on and its loop vectoriser off while these kernels
  compile (Numba's defaults are the reverse; with them the tile became
  gathers and scatters), set around the compile and restored after
  (:func:`volnet.ops.tiled.compile_flags`);
* a tile that fits the register file of the CPU that runs it, chosen at run
  time from the host's instruction set (:func:`tile`).

The weight gradient (:mod:`volnet.ops.direct_weights`) is the same kernel turned
around: a tile of filter taps x filters accumulates over the positions of
each image. Which layers take them is :func:`applies`, decided by
measurement (:data:`MIN_DEPTH`); :mod:`volnet.ops.conv` reads it in its plan.

Tails: filter counts that are not a multiple of ``KB`` run on weights
padded with zero filters; output rows not a multiple of ``PW`` end with a
tile whose pixels past the row read the row's last pixel and are not
stored. Every kernel takes a range of images, releases the GIL, and so
splits over the cores (:mod:`volnet.ops.threads`).

Numba is optional: without it, or with ``VOLNET_NUMBA=0``, :data:`ENABLED`
is False and :mod:`volnet.ops.conv` never plans a direct convolution.
"""

from __future__ import annotations

import math

import numpy as np

from . import aligned, threads, tiled
from .jit import ENABLED
from .tiled import isa

# The register tile, (output pixels, filters) for float32, per instruction set; float64 holds half the
# filters per register, so its tile has half of them. The tile must fit the register file: larger ones
# spill or pass LLVM's unroll limit and run several times slower. AVX-512 (32 registers of 16 floats)
# holds 7 or 8 x 32 (of the pixel counts, each layer takes the one that computes the fewest pixels past its
# rows' ends: 8 for rows of 32, 7 for rows of 14 or 28), AVX2 (16 registers of 8 floats) 2 x 32, SSE2 half
# that (the figures of each tile: docs/performance-log.md, issue 23).
TILES = {"avx512": ((7, 8), 32), "avx2": ((2,), 32), "portable": ((2,), 16)}
# The pixel counts of a tile half as wide (layers of at most half the tile's filters). AVX2 doubles its pixels,
# keeping 8 registers of sums: compiled for AVX2 on the AMD EPYC Zen 4, one thread, LeNet's 28x28x1->16 forward
# 0.78 ms in a 2 x 16 tile, 0.51 in 4 x 16; on AVX-512, 14 x 16 gained nothing over 7 x 16.
HALF_TILES = {"avx512": (7, 8), "avx2": (4,), "portable": (2,)}
# The uses of the direct kernels (see applies), and per instruction set those measured faster than the kernels
# they replace: only there does volnet.ops.conv_plan plan them. AVX-512: every use (the Intel Xeon, the AMD EPYC
# Zen 4). AVX2, measured on code compiled for AVX2 on the AMD EPYC Zen 4 (and on the Intel Xeon before; no AVX2
# host has measured them yet): first layers and LeNet's, 1.1-2.9x faster than im2col (LeNet's training step 17.3
# -> 6.5 ms), and one image through a small 3x3 layer; the uses whose tiles read deep weights for every 2 pixels
# lost (strided, pointwise, a deep layer's rows at batch 1) or tied (narrow) (docs/performance-log.md, issue 23).
USES = ("first", "lenet", "single", "narrow", "strided", "pointwise", "rows", "streamed")
MEASURED = {"avx512": USES, "avx2": ("first", "lenet", "single")}
# Which layers take the direct kernels (see applies): those where they beat the kernels they replace on
# the machine measured (the Intel Xeon, one thread, interleaved): first layers' forward and (most of) their
# dw, and LeNet-sized stride-1 layers' forward and dw; the strided 3x3/2 layers and the deep 3x3 layers
# (against Winograd) lost (every figure: docs/performance-log.md, issue 23).
MIN_DEPTH = 8
MAX_MULTIPLY = 32 * 32  # depth x filters of the deeper layers measured (LeNet's second CONV, and its flipped dx)
# The first layers measured: up to AlexNet's 96 filters (11x11/4, 227x227x3, batch 8, two threads: forward
# 6.95 -> 5.79 ms against im2col, dw 7.45 -> 6.39).
SHALLOW_MAX_FILTERS = 96
# Stride-2 3x3 layers (ResNet's downsampling CONVs) take the direct forward for batches of STRIDED_MIN_IMAGES
# and more, up to STRIDED_MAX_MULTIPLY depth x filters, and output rows at least STRIDED_MIN_WIDTH wide (a
# tile of 7 or 8 pixels on a row of 4 computes twice the pixels). Measured against im2col (the Intel Xeon,
# two threads, padding included): 32x32x64->128 batch 32 5.86 -> 4.82 ms, 16x16x128->256 4.95 -> 4.08,
# 56x56x64->128 batch 8 4.49 -> 3.84, 28x28x128->256 batch 8 3.84 -> 3.74; lost: 8x8x128->256 (4x4 out)
# 1.48 -> 2.12, 8x8x256->512 4.6 -> 18.2, and every one at batch 1 (1.14-3.7x; im2col's rows keep BLAS's
# two threads busy), 16x16x128->256 at batch 2 (1.14x). The dw stays im2col's (a tie, 5.02 / 4.90 ms).
STRIDED_MAX_MULTIPLY = 128 * 256
STRIDED_MIN_IMAGES = 8
STRIDED_MIN_WIDTH = 8
# One image (inference at batch 1, where Winograd does not apply): the direct forward on one core against
# im2col's rows and BLAS's two threads, 3x3: 32x32x32->32 155 against 225 us, 16x16x64->64 150 / 158,
# 32x32x64->64 510 / 575, 8x8x64->192 107 / 119; 16x16x128->128 (16384) lost, 511 / 426, and so did 5x5
# 16x16x64->192 (1441 / 730).
SINGLE_IMAGE_MULTIPLY = 64 * 192
# Narrow 3x3 stride-1 float32 layers (depth x filters up to NARROW_MAX_MULTIPLY, output rows at least
# NARROW_MIN_WIDTH wide) take the direct forward before Winograd: 32x32x32->32 at batch 64, 4.06 -> 3.49 ms on
# two threads; ties at 2048; float64 lost (docs/performance-log.md, issue 23's ninth session).
NARROW_MAX_MULTIPLY = 32 * 32
NARROW_MIN_WIDTH = 8
# 1x1 layers (pointwise) with output rows at least POINTWISE_MIN_WIDTH wide and depth x filters up to
# POINTWISE_MAX_MULTIPLY take the direct forward at any batch, where im2col is one GEMM (for stride 2, after a
# copy of every other pixel). Batch 64, two threads, im2col -> direct: 32x32x192->64 7.12 -> 5.64 ms, 1x1/2
# 32x32x64->128 1.54 -> 1.02, 8x8x512->128 1.88 -> 1.51, 56x56x64->64 11.0 -> 8.0, float64 too; batch 1
# 1.2-2.2x; lost: 4x4x2048->512 (rows of 4) 7.6 -> 28.7, 8x8x256->1024 3.75 -> 3.93 (docs/performance-log.md).
POINTWISE_MIN_WIDTH = 8
POINTWISE_MAX_MULTIPLY = 512 * 128
# Stride-1 1x1 layers that widen, more than POINTWISE_MAX_WIDENING filters a channel, take im2col's one GEMM unless
# one image's rows are split over Numba's threads (so does the flipped input gradient of a 1x1 layer that narrows
# that much).
# Batch 64, two threads, direct against im2col (the Intel Xeon): 32x32x64->96 0.86, 64->128 0.93, 16x16x128->192
# 1.01, 128->256 0.99; lost: 32x32x64->192 1.23 (8.2 against 6.7 ms), 64->256 1.33, 16x16x128->512 1.13, 8x8x128->512
# 1.08; narrowing ones won (32x32x192->64 0.83, 16x16x256->64 0.86), strided ones too (1x1/2 32x32x64->128 0.70,
# 16x16x128->256 0.85), and one image split by rows (32x32x64->192 0.58, 16x16x128->512 0.88).
POINTWISE_MAX_WIDENING = 2
# One image's output rows split over Numba's threads (a forward pass at batch 1: native_blas.split_threads): parts
# of at least this many multiply-adds. LeNet's first CONV, 313,600 in all, took 10.4 us on one core and
# 6.4 on two (the Intel Xeon); LeNet-5's second, 240,000, gained less than the split cost (the net 0.143 -> 0.158 ms).
ROW_PART_MULTIPLY_ADDS = 2**17
# Split so, the direct forward also beats im2col (a GEMM on Numba's threads, volnet.ops.native_blas) on deeper
# layers: any filter size and stride other than 1x1, output rows at least ROWS_MIN_WIDTH wide and weights of at
# most ROWS_MAX_WEIGHT_BYTES (the kernel reads all of them for each row of output pixels: from L2 where they fit,
# 2 MB a core here). Measured at batch 1 on two cores (the Intel Xeon; im2col then on BLAS's two threads, which
# the split now replaces), direct against im2col: 3x3 16x16x128->128 (590 KB of weights) 279 against 427 us,
# 3x3/2 32x32x64->128 177 / 244, 16x16x128->256 (1.2 MB) 184 / 255, 5x5 16x16x64->192 (1.2 MB) 587 / 707;
# lost: 5x5 16x16x96->256 (ZFNet's, 2.5 MB) 2154 / 1463, 3x3 8x8x256->256 (2.4 MB) 1024 / 452, 8x8x192->384
# 1144 / 530, 3x3/2 8x8x256->512 (4x4 out) 536 / 326-400. Layers of at most 64 output pixels and 256 KB of weights
# or more take the streamed CONV before these rows (volnet.ops.streamed.MIN_WEIGHT_BYTES: with the weights cycled
# as in a network's pass, 3x3/2 16x16x128->256 468 us here against 267 streamed).
ROWS_MIN_WIDTH = 8
ROWS_MAX_WEIGHT_BYTES = 3 * 2**19
# A part of a split batch holds this many multiply-adds, a quarter of threads.MIN_PART_MULTIPLY_ADDS: on few
# channels these kernels run at a third of BLAS's rate (LeNet's first layer, 20 million multiply-adds in all:
# forward 0.73 ms on one thread, 0.49 on two; input gradient 2.0 and 1.0).
MIN_PART_MULTIPLY_ADDS = 2**22


def tile(filters: int, dtype, out_width: int | None = None) -> tuple[int, int]:
    """``(pixels, filters)`` of the register tile for ``filters`` output channels of ``dtype`` on this host
    (:data:`TILES`): of its pixel counts the one whose whole tiles cover ``out_width`` output pixels with the
    fewest to spare (the first where they tie, or where no width is given); layers with at most half the
    tile's filters take a tile half as wide, of :data:`HALF_TILES`' pixel counts."""
    counts, width = TILES[isa()]
    if np.dtype(dtype).itemsize == 8:
        width //= 2
    if filters <= width // 2:
        counts, width = HALF_TILES[isa()], width // 2
    pixels = counts[0] if out_width is None else min(counts, key=lambda p: -(-out_width // p) * p)
    return pixels, width


def applies(g, depth: int, filters: int, dtype, split_rows: bool = False) -> bool:
    """Whether :mod:`volnet.ops.conv` plans the direct forward for geometry ``g``: Numba on, an undilated float
    layer, and one of these uses, measured on this host's instruction set (:data:`MEASURED`): 1x1 within
    :data:`POINTWISE_MAX_MULTIPLY` ("pointwise"); a first layer, fewer than :data:`MIN_DEPTH` channels into at
    most :data:`SHALLOW_MAX_FILTERS` filters ("first"); LeNet-sized (:func:`lenet_sized`, "lenet"); one image
    through a stride-1 3x3 layer of at most :data:`SINGLE_IMAGE_MULTIPLY` depth x filters ("single"); a stride-2
    3x3 layer (:data:`STRIDED_MAX_MULTIPLY`, "strided"); with ``split_rows`` (one image's output split over
    Numba's threads, ``Workers.split_rows``) any layer within :data:`ROWS_MIN_WIDTH` and
    :data:`ROWS_MAX_WEIGHT_BYTES` ("rows")."""
    if g.size == (1, 1):
        widens = g.stride == (1, 1) and not split_rows and filters > POINTWISE_MAX_WIDENING * depth
        return (g.out_hw[1] >= POINTWISE_MIN_WIDTH and depth * filters <= POINTWISE_MAX_MULTIPLY and not widens
                and measured(g, dtype, "pointwise"))
    weight_bytes = math.prod(g.size) * depth * filters * np.dtype(dtype).itemsize
    uses = {
        "first": depth < MIN_DEPTH and filters <= SHALLOW_MAX_FILTERS,
        "lenet": lenet_sized(g, depth, filters),
        "single": (g.in_shape[0] == 1 and g.stride == (1, 1) and g.size == (3, 3)
                   and depth * filters <= SINGLE_IMAGE_MULTIPLY),
        "strided": (g.stride == (2, 2) and g.size == (3, 3) and MIN_DEPTH <= depth
                    and depth * filters <= STRIDED_MAX_MULTIPLY and g.in_shape[0] >= STRIDED_MIN_IMAGES
                    and g.out_hw[1] >= STRIDED_MIN_WIDTH),
        "rows": split_rows and g.out_hw[1] >= ROWS_MIN_WIDTH and weight_bytes <= ROWS_MAX_WEIGHT_BYTES,
    }
    return any(holds and measured(g, dtype, use) for use, holds in uses.items())


def before_winograd(g, depth: int, filters: int, dtype) -> bool:
    """Whether the plan takes the direct forward where Winograd would also apply (:data:`NARROW_MAX_MULTIPLY`,
    "narrow")."""
    return (g.size == (3, 3) and g.stride == (1, 1) and depth * filters <= NARROW_MAX_MULTIPLY
            and g.out_hw[1] >= NARROW_MIN_WIDTH and np.dtype(dtype) == np.float32 and measured(g, dtype, "narrow"))


def workers(g, filters: int, workers) -> int:
    """Threads for this module's kernels and :mod:`volnet.ops.direct_input`'s: every core of ``workers`` (a
    :class:`~volnet.ops.threads.Workers`, or a count) where each part holds :data:`MIN_PART_MULTIPLY_ADDS`."""
    (N, _, _, D), (Ho, Wo), (Fh, Fw) = g.in_shape, g.out_hw, g.size
    cores = workers if isinstance(workers, int) else workers.count()
    return threads.workers_for(N * Ho * Wo * filters * Fh * Fw * D, N, cores, MIN_PART_MULTIPLY_ADDS)


def lenet_sized(g, depth: int, filters: int) -> bool:
    """A stride-1 layer other than 3x3, at least :data:`MIN_DEPTH` deep, of at most :data:`MAX_MULTIPLY` depth
    x filters (LeNet's second CONV and its flipped input gradient): the direct forward and weight gradient."""
    return (g.stride == (1, 1) and g.size != (3, 3) and MIN_DEPTH <= depth
            and depth * filters <= MAX_MULTIPLY)


def measured(g, dtype, use: str) -> bool:
    """Whether the direct kernels may run layer ``g`` for ``use`` (:func:`measured_here`): an undilated float
    layer, 1x1 where ``use`` is "pointwise" and only there."""
    return (np.dtype(dtype) in (np.float32, np.float64) and g.dilation == (1, 1)
            and (use == "pointwise") == (g.size == (1, 1)) and measured_here(use))


def measured_here(use: str) -> bool:
    """Whether Numba runs and ``use`` (one of :data:`USES`) was measured faster on this host's instruction set
    (:data:`MEASURED`)."""
    return ENABLED and use in MEASURED.get(isa(), ())


def workspace(g, filters: int, itemsize: int) -> int:
    """Bytes :func:`correlate` allocates beside its output: the weights and biases, aligned and padded to
    whole tiles of filters (a copy unless the weights already are both). An input that padding only cropped is
    read in place, not copied."""
    (Fh, Fw), D = g.size, g.in_shape[3]
    return padded_weights_bytes(Fh * Fw * D, filters, itemsize)


def padded_filters(filters: int, itemsize: int) -> int:
    """``filters`` rounded up to whole tiles of filters (:func:`tile`)."""
    width = tile(filters, np.float32 if itemsize == 4 else np.float64)[1]
    return -(-filters // width) * width


def _forward_source(PW: int, KB: int):
    """The forward kernel with a ``PW x KB`` tile (closure constants)."""
    T = PW * KB
    KH = max(1, KB // 16)

    def forward(xp, w, bias, floor, Sh, SD, out, first, last, window):  # pragma: no cover - compiled
        # xp (N, Hp, Wp*D), w (F, F*D, Kp): a filter row's taps and channels are one run (v, d) in both;
        # pixel j's run starts at j*SD = j*Sw*D. window (Ho, Wo, r0, c0, oy, ys, ox, xs, top, bottom, pool): an
        # Ho x Wo output read from xp's rows from r0 on and runs from c0 on, pixel (i, j) written to out[n, oy +
        # i*ys, ox + j*xs] (a layer: (Ho, Wo, 0, 0, 0, 1, 0, 1, top, bottom, 1); a strided dx's phases write every
        # Sh-th row), skipping the filter rows that read xp's padding rows, outside [top, bottom). With pool > 1
        # each pool x pool block of outputs is max pooled into one (i // pool, j // pool): the rows of a block
        # are computed in turn by one thread. Indices are cast unsigned: NumPy's wrap-around of negative ones,
        # which Numba adds to signed ones, made loops 6x slower
        Ho, Wo, r0, c0, oy, ys, ox, xs, top, bottom, pool = window
        Fh, taps, Kp = w.shape
        K = out.shape[3]
        Hq = Ho // pool
        for block_of_batch in tiled.prange((last - first) * Hq):  # (threads over rows only where parallel)
            n, r = first + block_of_batch // Hq, block_of_batch % Hq
            acc = tiled.carray(tiled.stack_array(T, xp.dtype), T)
            out_row = tiled.unsigned(oy + r * ys)
            for s in range(pool):
                i = r * pool + s
                u_first, u_stop = max(0, top - r0 - i * Sh), min(Fh, bottom - r0 - i * Sh)
                for j0 in range(0, Wo, PW):
                    for k0 in range(0, Kp, KB):
                        # Sums start from the biases: the output pass then reads only the tile (bias reads between
                        # its stores, which might alias them, left it scalar: D=1 2.5x slower). Loops over KB run
                        # as KH x 16: LLVM unrolls 16 iterations fully, not 32, and leaves a rolled loop scalar
                        for p in range(PW):
                            if KH == 1:
                                for q in range(KB):
                                    acc[p * KB + q] = bias[k0 + q]
                            else:
                                for h in range(KH):
                                    for q in range(16):
                                        acc[p * KB + h * 16 + q] = bias[k0 + h * 16 + q]
                        for u in range(u_first, u_stop):
                            row = tiled.unsigned(r0 + i * Sh + u)
                            for e in range(taps):
                                for p in range(PW):
                                    x = xp[n, row, tiled.unsigned(c0 + min(j0 + p, Wo - 1) * SD + e)]
                                    if KH == 1:
                                        for q in range(KB):
                                            acc[p * KB + q] += x * w[u, e, k0 + q]
                                    else:
                                        for h in range(KH):
                                            for q in range(16):
                                                acc[p * KB + h * 16 + q] += x * w[u, e, k0 + h * 16 + q]
                        if j0 + PW <= Wo and k0 + KB <= K:  # a whole tile: constant loops, vectorised
                            for p in range(PW):
                                column, opening = tiled.output_column(j0 + p, s, pool, ox, xs)
                                if opening:
                                    if KH == 1:
                                        for q in range(KB):
                                            out[n, out_row, column, k0 + q] = tiled.at_least(acc[p * KB + q], floor)
                                    else:
                                        for h in range(KH):
                                            for q in range(16):
                                                out[n, out_row, column, k0 + h * 16 + q] = tiled.at_least(
                                                    acc[p * KB + h * 16 + q], floor)
                                else:
                                    for q in range(KB):
                                        out[n, out_row, column, k0 + q] = tiled.larger(
                                            out[n, out_row, column, k0 + q], tiled.at_least(acc[p * KB + q], floor))
                        else:  # a tile past the row's end or the last filter: constant indices into acc
                            # all the same (an index that varies at run time leaves the tile in memory, not in
                            # registers: LeNet's 28x28x1->16 0.58 -> 0.36 ms on one core of the AMD EPYC Zen 4)
                            for p in range(PW):
                                if j0 + p < Wo:
                                    column, opening = tiled.output_column(j0 + p, s, pool, ox, xs)
                                    for q in range(KB):
                                        if k0 + q < K:
                                            value = tiled.at_least(acc[p * KB + q], floor)
                                            out[n, out_row, column, k0 + q] = value if opening else tiled.larger(
                                                out[n, out_row, column, k0 + q], value)

    return forward


def correlate(xp: np.ndarray, w: np.ndarray, g, bias=None, relu: bool = False, workers: int = 1, *,
              blas_held: bool = False, fill=None, row_threads: int = 1) -> np.ndarray:
    """``(N, H2, W2, K)``: the padded batch ``xp (N, Hp, Wp, D)`` correlated with ``w (F, F, D, K)`` as
    geometry ``g`` says (its stride and output size; undilated), plus ``bias`` (None: none), rectified
    where ``relu``; the batch split over ``workers`` threads, or (``row_threads`` > 1, one image) the output
    rows over that many of Numba's threads (:data:`ROW_PART_MULTIPLY_ADDS`). ``H2 = (Hp - F)//S + 1``.
    ``fill``: where given, a :class:`volnet.ops.window.Fill` that first writes those images of ``xp``, in each
    part of the split."""
    correlate_now = correlator(g, w.shape[3], np.result_type(xp, w), relu, workers, blas_held, row_threads)
    return correlate_now(xp, w, bias, fill)


def correlator(g, filters: int, dtype, relu: bool = False, workers: int = 1, blas_held: bool = False,
               row_threads: int = 1, pool: int = 1):
    """:func:`correlate` for the layer of geometry ``g`` with ``filters`` filters, computing in ``dtype``, as a
    function ``(xp, w, bias, fill) -> out`` of the arrays alone: what depends only on the shapes (the kernel,
    its window, the split) is worked out here, once, for a caller that runs the same layer again.

    ``pool`` > 1 (dividing both output sizes): the output max pooled ``pool x pool`` with stride ``pool``
    (after the ReLU, where ``relu``) in the kernel's output pass, ``(N, H2/pool, W2/pool, K)``: a following
    POOL fused in inference, whose input is never written to memory (:func:`can_pool`)."""
    dtype = np.dtype(dtype)
    (N, _, _, D), (Ho, Wo), (Fh, Fw), (Sh, Sw) = g.in_shape, g.out_hw, g.size, g.stride
    by_rows = (workers == 1 and row_threads > 1
               and N * Ho * Wo * filters * Fh * Fw * D >= row_threads * ROW_PART_MULTIPLY_ADDS)
    kernel = forward_kernel(filters, dtype, Wo, parallel=by_rows)
    floor = dtype.type(0 if relu else -np.inf)
    if not can_pool(g, pool):
        raise ValueError(f"a {pool}x{pool} pool does not tile a {Ho}x{Wo} output")
    out_shape = (N, Ho // pool, Wo // pool, filters)
    whole_tiles = padded_filters(filters, dtype.itemsize) == filters
    top = max(g.pads[0], 0)  # the input's rows in xp lie between its padding: from top to bottom
    bottom = top + g.in_shape[1] - max(-g.pads[0], 0) - max(-g.pads[1], 0)
    window = (Ho, Wo, 0, 0, 0, 1, 0, 1, top, bottom, pool)

    def correlate_now(xp, w, bias, fill):
        N, Hp, Wp, D = xp.shape
        taps, bias = tiled_weights(w, bias, dtype, whole_tiles)
        if by_rows:  # one image, from weights in memory (aligned.read_in_order)
            aligned.read_in_order(taps)
        # a view where it can be: an input that fit='crop' cropped (each row one run, the runs further apart
        # than their length) is read in place (1x1/2 32x32x64->128 at batch 32: 1.46 -> 0.92 ms against a copy)
        rows = (xp if fill or xp.dtype == dtype else xp.astype(dtype)).reshape(N, Hp, Wp * D)
        out = np.empty(out_shape, dtype=dtype)

        def correlate_calls(start, stop):
            correlate = (kernel, (rows, taps, bias, floor, Sh, Sw * D, out, start, stop, window))
            return [fill.call(start, stop), correlate] if fill else [correlate]

        threads.split_compiled(correlate_calls, N, workers, blas_held=blas_held)
        return out

    return correlate_now


def can_pool(g, pool: int) -> bool:
    """Whether :func:`correlator` can max pool layer ``g``'s output ``pool x pool`` (stride ``pool``): both
    output sizes multiples of ``pool``."""
    return pool >= 1 and g.out_hw[0] % pool == 0 and g.out_hw[1] % pool == 0


def forward_kernel(filters: int, dtype, out_width: int, parallel: bool = False):
    """The compiled forward kernel whose tile suits ``filters`` filters of ``dtype`` on output rows
    ``out_width`` wide (:func:`tile`); ``parallel``: the one whose rows run on Numba's threads."""
    return tiled.kernel(_forward_source, *tile(filters, dtype, out_width), parallel)


def tiled_weights(w: np.ndarray, bias, dtype, whole_tiles: bool | None = None,
                  require_aligned: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(taps (F, F*D, Kp), bias (Kp,))``: the weights ``w (F, F, D, K)`` and biases (None: zeros) as the
    forward kernel reads them, filters padded with zeros to whole tiles: ``w`` itself where its filters fill
    whole tiles (``whole_tiles``, where the caller knows) and it lies C-contiguous and (``require_aligned``)
    aligned, else :func:`padded_weights`."""
    K = w.shape[3]
    whole_tiles = padded_filters(K, dtype.itemsize) == K if whole_tiles is None else whole_tiles
    if whole_tiles and w.dtype == dtype and w.flags.c_contiguous and (
            not require_aligned or w.ctypes.data % aligned.ALIGNMENT == 0):
        return w.reshape(w.shape[0], -1, K), np.zeros(K, dtype=dtype) if bias is None else np.asarray(bias, dtype)
    return padded_weights(w, bias, dtype)


def padded_weights(w: np.ndarray, bias, dtype) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tiled_weights` as one aligned copy of the weights (any layout) and biases, zero filters up to
    whole tiles: ``(F*F*D + 1) * Kp`` values (:func:`padded_weights_bytes`)."""
    (Fh, Fw, D, K), Kp = w.shape, padded_filters(w.shape[3], dtype.itemsize)
    both = aligned.zeros((Fh * Fw * D + 1, Kp), dtype)
    both[:-1].reshape(Fh, Fw, D, Kp)[..., :K] = w
    if bias is not None:
        both[-1, :K] = bias
    return both[:-1].reshape(Fh, -1, Kp), both[-1]


def padded_weights_bytes(taps: int, filters: int, itemsize: int) -> int:
    """Bytes :func:`padded_weights` allocates for ``taps`` (F*F*D) weights of each of ``filters`` filters."""
    return (taps + 1) * padded_filters(filters, itemsize) * itemsize + aligned.ALIGNMENT
