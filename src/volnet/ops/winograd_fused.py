"""Winograd F(4x4, 5x5) compiled: each block of output tiles transformed, multiplied and transformed back in cache.

LeNet's 5x5 layers (16 -> 32 channels on 14x14, and its input gradient, 32 -> 16) are too thin for
:mod:`volnet.ops.winograd_5x5`, whose 64 products per block are BLAS multiplies only 16-32 wide, and
the direct kernel (:mod:`volnet.ops.direct`) does all 25 taps of every output. Here one compiled pass
takes a block of output tiles at a time (:func:`tiles_per_block`, 4x4 outputs each, read from 8x8 inputs):

1. their input tiles ``V = B^T d B``, 16 channels at a time (:data:`CHANNEL_BLOCK`), the rows of a tile
   first and then its columns, each a loop over the channels that LLVM's loop vectoriser runs as vectors;
2. for each of the 64 transform points the products ``M[p] = V[p] @ U[p]`` (tiles x depth times depth x
   filters) with the tiles x filters block of sums held in registers, as the direct kernel holds its tile
   (SLP vectoriser, constant loops; :mod:`volnet.ops.tiled`);
3. the outputs ``Y = A^T M A`` with the bias, the ReLU and, where asked, a 2x2 max pool.

The block's V and M (64 x 8 x depth and 64 x 8 x filters values on AVX-512, 32 and 64 KB for LeNet's layer) stay
in the core's cache between the three steps. ``A^T``, ``G`` and ``B^T`` are those of
:func:`volnet.ops.winograd_5x5.transforms` (points 0, +-1, +-2, +-1/2), written out below as sums
(B^T's even and odd rows share their halves). 64 multiply-adds per tile and channel pair where the
direct kernel does 400; in float32 the results differ from direct correlation by about 1e-5 of their
largest value, as :mod:`volnet.ops.winograd_5x5`'s do. Measured (one core of the AMD EPYC Zen 4, batch
64, LeNet's 14x14x16->32): the input and output transforms 0.18 and 0.19 ms, the products 0.63, the
whole forward 1.15-1.3 ms against 2.6-2.8 for the direct kernel (docs/performance-log.md).

Both vectorisers must be on while this kernel compiles (:func:`volnet.ops.tiled.compile_flags` with
``loop_vectorize``): the transforms' channel loops are too long to unroll, and the SLP vectoriser alone
left them scalar (4-7x slower); with the loop vectoriser alone the products' register tile became
gathers (16x slower). The transforms read their arrays into stack arrays and write them from stack
arrays, with unsigned indices: a loop that both reads and writes arguments, or indexes them by signed
numbers (NumPy's wrap-around of negative ones), was not vectorised at all.
"""

from __future__ import annotations

import numpy as np

from . import direct, threads, tiled
from .direct import lenet_sized, measured
from .jit import compiled

OUTPUT_TILE, SPAN, POINTS = 4, 8, 64  # F(4x4, 5x5): 4x4 outputs from 8x8 inputs, 64 products per channel pair
# The tiles of one block, per instruction set: the rows of the products' register tile. Compiled for AVX2 on the
# AMD EPYC Zen 4 (one thread, batch 64, interleaved), LeNet's 14x14x16->32 ran 2.0 ms in blocks of 8 (16 of
# AVX2's 16 registers of sums), 1.4 in blocks of 4 to 6; on AVX-512 4 to 12 tied (1.2-1.4 ms).
TILES_PER_BLOCK = {"avx512": 8, "avx2": 6, "portable": 4}
# The filters of a block, the columns of that register tile, for any layer and dtype: one kernel to compile
# (LeNet's 32 filters ran as fast in two tiles of 16 as in one of 32: 1.49 against 1.54 ms, one core, batch 64)
FILTER_BLOCK = 16
CHANNEL_BLOCK = 16  # channels per transform loop; the layer's depth a multiple of it
FILTER_SIZE = 5
# B^T's and A^T's coefficients as the kernel reads them (one array, in the layer's dtype): constants in
# Numba are float64, and a float64 constant times a float32 value is a float64 product
COEFFICIENTS = (5.25, 4.25, 0.25, 1.25, 0.5, 2.5, 2.0, 4.0, 5.0, 8.0, 0.125)
FILTER_COEFFICIENTS = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, -2 / 9, 1 / 90)  # G's, as the filter transform reads them


def applies(g, depth: int, filters: int, dtype) -> bool:
    """Whether the correlation of geometry ``g``, ``depth`` channels into ``filters``, takes :func:`correlator`:
    a 5x5 layer of LeNet's size (:func:`volnet.ops.direct.lenet_sized`: stride 1) whose depth is a multiple of
    :data:`CHANNEL_BLOCK`, where the direct kernels may run (:func:`volnet.ops.direct.measured`: Numba on, an
    instruction set measured, floats, undilated)."""
    return (g.size == (FILTER_SIZE, FILTER_SIZE) and depth % CHANNEL_BLOCK == 0 and lenet_sized(g, depth, filters)
            and measured(g, dtype, "lenet"))


def tiles_per_block() -> int:
    """The output tiles of a block on this host (:data:`TILES_PER_BLOCK`)."""
    return TILES_PER_BLOCK[direct.isa()]


def tiles(out_hw) -> tuple[int, int]:
    """How many 4x4 output tiles cover an output of ``(H2, W2)``."""
    return -(-out_hw[0] // OUTPUT_TILE), -(-out_hw[1] // OUTPUT_TILE)


def padded_filters(filters: int) -> int:
    """``filters`` rounded up to whole :data:`FILTER_BLOCK`s: the depth of U, M and the padded biases."""
    return -(-filters // FILTER_BLOCK) * FILTER_BLOCK


def can_pool(g, pool: int) -> bool:
    """Whether :func:`correlator` max pools the output ``pool x pool`` in its output pass: 1, or a pool that
    divides the 4x4 tile and both output sizes."""
    return pool == 1 or (OUTPUT_TILE % pool == 0 and g.out_hw[0] % pool == 0 and g.out_hw[1] % pool == 0)


def filter_transform(w: np.ndarray, dtype, flipped: bool = False) -> np.ndarray:
    """``U (64, D, Kp)``: ``G g G^T`` of each filter ``g`` of ``w (5, 5, D, K)``, filters padded with zeros to
    :func:`padded_filters`; with ``flipped``, of ``w (5, 5, K, D)`` flipped in space with its last two axes
    swapped (an input gradient's filters). Compiled, G's rows written out: two NumPy multiplies by G took 17 us
    for LeNet's layer, a sixth of its forward pass at batch 1; 10-13 us so. The compiled transform reads
    C-contiguous filters only (each layout would be a compile of its own, 0.8 s): flipped ones are copied."""
    if flipped:
        w = w[::-1, ::-1].transpose(0, 1, 3, 2)
    _, _, D, K = w.shape
    U = np.empty((POINTS, D, padded_filters(K)), dtype=dtype)
    _compile_rows()
    _transform_filters(np.ascontiguousarray(w, dtype=dtype), np.array(FILTER_COEFFICIENTS, dtype=dtype), U)
    return U


def workspace(g, filters: int, itemsize: int, workers: int, flipped: bool = False) -> int:
    """Bytes :func:`correlator` allocates beside its output: U (and an input gradient's filters flipped, a
    ``flipped`` correlation's), the padded biases, and each part's block of V and M."""
    D, Kp = g.in_shape[3], padded_filters(filters)
    transform = POINTS * D * Kp * itemsize + (FILTER_SIZE ** 2 * D * filters * itemsize if flipped else 0)
    blocks = workers * tiles_per_block() * POINTS * (D + Kp) * itemsize
    return transform + Kp * itemsize + blocks


def correlator(g, filters: int, dtype, relu: bool = False, workers: int = 1, blas_held: bool = False,
               pool: int = 1, flipped: bool = False):
    """The correlation of layer ``g`` (padded input ``xp (N, Hp, Wp, D)``, 5x5 stride 1, output ``(N, H2, W2,
    K)``) as a function ``(xp, w, bias, fill) -> out``, like :func:`volnet.ops.direct.correlator`: plus
    ``bias`` (None: none), rectified where ``relu``, max pooled ``pool x pool`` where ``pool`` > 1
    (:func:`can_pool`), the batch split over ``workers`` threads, each part first filling its images of
    ``xp`` (``fill``, a :class:`volnet.ops.window.Fill`, where given). ``flipped``: ``w`` is ``(5, 5, K, D)``
    to be flipped (:func:`filter_transform`)."""
    dtype = np.dtype(dtype)
    if not can_pool(g, pool):
        raise ValueError(f"a {pool}x{pool} pool does not tile a {g.out_hw[0]}x{g.out_hw[1]} output in 4x4 tiles")
    (N, _, _, D), (Ho, Wo), K = g.in_shape, g.out_hw, filters
    Kp = padded_filters(K)
    _compile_rows()
    block = tiles_per_block()
    kernel = tiled.kernel(_source, block, FILTER_BLOCK, loop_vectorize=True)
    coefficients = np.array(COEFFICIENTS, dtype=dtype)
    floor = dtype.type(0 if relu else -np.inf)
    out_shape = (N, Ho // pool, Wo // pool, K)

    def correlate_now(xp, w, bias, fill):
        U = filter_transform(w, dtype, flipped)
        padded_bias = np.zeros(Kp, dtype=dtype)
        if bias is not None:
            padded_bias[:K] = bias
        rows = xp if fill else np.ascontiguousarray(xp, dtype=dtype)  # (the kernel reads it flat)
        _, Hp, Wp, _ = rows.shape
        shape = (Hp, Wp, D, Kp, *tiles((Ho, Wo)), Ho, Wo, K, pool)
        out = np.empty(out_shape, dtype=dtype)

        def correlate_calls(start, stop):
            V = np.empty(block * POINTS * D, dtype=dtype)
            M = np.empty(block * POINTS * Kp, dtype=dtype)
            correlate = (kernel, (rows.reshape(-1), U, padded_bias, coefficients, floor, out.reshape(-1), start, stop,
                                  V, M, shape))
            return [fill.call(start, stop), correlate] if fill else [correlate]

        threads.split_compiled(correlate_calls, N, workers, blas_held=blas_held)
        return out

    return correlate_now


def _source(TB: int, KB: int):
    """The kernel for blocks of ``TB`` tiles with a ``TB x KB`` register tile of sums (closure constants)."""
    CB = CHANNEL_BLOCK
    S64, TK, KH = POINTS * CB, TB * KB, KB // 16

    def kernel(xp, U, bias, c, floor, out, first, last, V, M, shape):  # pragma: no cover - compiled
        # xp: the padded input (N, Hp, Wp, D) flat; U (64, D, Kp); out (N, Ho/pool, Wo/pool, K) flat; V, M: one
        # block's transformed tiles (64, TB, D) and products (64, TB, Kp), flat. Point p = 8*a + b of a tile is
        # row a, column b of B^T d B. Every index is unsigned, every loop over channels reads arrays into stack
        # arrays or writes them from stack arrays: else LLVM leaves the loop scalar (see the module docstring)
        u = tiled.unsigned
        Hp, Wp, D, Kp, Ht, Wt, Ho, Wo, K, pool = shape
        c525, c425, c025, c125, c05, c25, c2, c4, c5, c8, c0125 = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                                                                   c[8], c[9], c[10])
        T1 = tiled.carray(tiled.stack_array(S64, xp.dtype), S64)
        T2 = tiled.carray(tiled.stack_array(S64, xp.dtype), S64)
        acc = tiled.carray(tiled.stack_array(TK, xp.dtype), TK)
        per_image = Ht * Wt
        t_first, t_last = first * per_image, last * per_image
        uD, uCB, vplane, mplane = u(D), u(CB), u(TB * D), u(TB * Kp)
        for b0 in range(t_first, t_last, TB):
            # 1. V = B^T d B for each tile of the block (past the last tile: the last again, never stored)
            for tb in range(TB):
                t = min(b0 + tb, t_last - 1)
                n, th, tw = t // per_image, (t % per_image) // Wt, t % Wt
                for d0 in range(0, D, CB):
                    for i in range(SPAN):  # row i of the tile: T1[8*i + b] = (d B)[i, b]
                        row, to = th * OUTPUT_TILE + i, u(i * SPAN * CB)
                        if row >= Hp:
                            for q in range(CB):
                                uq = u(q)
                                for b in range(SPAN):
                                    T1[to + u(b * CB) + uq] = 0
                            continue
                        xo = u(((n * Hp + row) * Wp + tw * OUTPUT_TILE) * D + d0)
                        if tw * OUTPUT_TILE + SPAN <= Wp:
                            for q in range(CB):
                                uq = u(q)
                                y0, y1, y2, y3, y4, y5, y6, y7 = _input_row(
                                    xp[xo + uq], xp[xo + uD + uq], xp[xo + u(2) * uD + uq], xp[xo + u(3) * uD + uq],
                                    xp[xo + u(4) * uD + uq], xp[xo + u(5) * uD + uq], xp[xo + u(6) * uD + uq],
                                    xp[xo + u(7) * uD + uq], c525, c425, c025, c125, c05, c25, c2, c4, c5)
                                _put_row(T1, to + uq, uCB, y0, y1, y2, y3, y4, y5, y6, y7)
                        else:  # the tile reaches past the input's last column: zeros there, through T2
                            for b in range(SPAN):
                                inside = tw * OUTPUT_TILE + b < Wp
                                for q in range(CB):
                                    T2[u(b * CB + q)] = xp[xo + u(b) * uD + u(q)] if inside else 0
                            for q in range(CB):
                                uq = u(q)
                                y0, y1, y2, y3, y4, y5, y6, y7 = _input_row(
                                    T2[uq], T2[uCB + uq], T2[u(2 * CB) + uq], T2[u(3 * CB) + uq], T2[u(4 * CB) + uq],
                                    T2[u(5 * CB) + uq], T2[u(6 * CB) + uq], T2[u(7 * CB) + uq],
                                    c525, c425, c025, c125, c05, c25, c2, c4, c5)
                                _put_row(T1, to + uq, uCB, y0, y1, y2, y3, y4, y5, y6, y7)
                    for b in range(SPAN):  # column b: V[8*a + b] = (B^T d B)[a, b]
                        tb_ = u(b * CB)
                        vo = u((b * TB + tb) * D + d0)
                        for q in range(CB):
                            uq = u(q)
                            y0, y1, y2, y3, y4, y5, y6, y7 = _input_row(
                                T1[tb_ + uq], T1[tb_ + u(8 * CB) + uq], T1[tb_ + u(16 * CB) + uq],
                                T1[tb_ + u(24 * CB) + uq], T1[tb_ + u(32 * CB) + uq], T1[tb_ + u(40 * CB) + uq],
                                T1[tb_ + u(48 * CB) + uq], T1[tb_ + u(56 * CB) + uq],
                                c525, c425, c025, c125, c05, c25, c2, c4, c5)
                            _put_row(V, vo + uq, u(8) * vplane, y0, y1, y2, y3, y4, y5, y6, y7)
            # 2. M[p] = V[p] @ U[p], a TB x KB tile of sums in registers (KB as KH x 16: LLVM unrolls 16 fully)
            for p in range(POINTS):
                for k0 in range(0, Kp, KB):
                    for tb in range(TB):
                        for h in range(KH):
                            for q in range(16):
                                acc[tb * KB + h * 16 + q] = 0
                    for d in range(D):
                        for tb in range(TB):
                            v = V[u((p * TB + tb) * D + d)]
                            for h in range(KH):
                                for q in range(16):
                                    acc[tb * KB + h * 16 + q] += v * U[p, d, u(k0 + h * 16 + q)]
                    for tb in range(TB):
                        mo = u((p * TB + tb) * Kp + k0)
                        for h in range(KH):
                            for q in range(16):
                                M[mo + u(h * 16 + q)] = acc[tb * KB + h * 16 + q]
            # 3. Y = A^T M A, plus the bias, rectified, pooled: 16 filters at a time
            for tb in range(TB):
                t = b0 + tb
                if t >= t_last:
                    break
                n, th, tw = t // per_image, (t % per_image) // Wt, t % Wt
                for k0 in range(0, Kp, CB):
                    for b in range(SPAN):  # T1[8*i + b] = (A^T M)[i, b]
                        mo, tb_ = u((b * TB + tb) * Kp + k0), u(b * CB)
                        for q in range(CB):
                            at = mo + u(q)
                            y0, y1, y2, y3 = _output_row(
                                M[at], M[at + u(8) * mplane], M[at + u(16) * mplane], M[at + u(24) * mplane],
                                M[at + u(32) * mplane], M[at + u(40) * mplane], M[at + u(48) * mplane],
                                M[at + u(56) * mplane], c05, c025, c2, c4, c8, c0125)
                            T1[tb_ + u(q)] = y0
                            T1[tb_ + u(8 * CB + q)] = y1
                            T1[tb_ + u(16 * CB + q)] = y2
                            T1[tb_ + u(24 * CB + q)] = y3
                    for q in range(CB):
                        T2[u(16 * CB + q)] = bias[u(k0 + q)]
                    for i in range(OUTPUT_TILE):  # T2[4*i + j] = Y[i, j] + bias, rectified
                        to = u(i * SPAN * CB)
                        for q in range(CB):
                            uq = u(q)
                            y0, y1, y2, y3 = _output_row(
                                T1[to + uq], T1[to + uCB + uq], T1[to + u(2 * CB) + uq], T1[to + u(3 * CB) + uq],
                                T1[to + u(4 * CB) + uq], T1[to + u(5 * CB) + uq], T1[to + u(6 * CB) + uq],
                                T1[to + u(7 * CB) + uq], c05, c025, c2, c4, c8, c0125)
                            bq, yo = T2[u(16 * CB) + uq], u(i * 4 * CB) + uq
                            T2[yo] = tiled.at_least(y0 + bq, floor)
                            T2[yo + uCB] = tiled.at_least(y1 + bq, floor)
                            T2[yo + u(2 * CB)] = tiled.at_least(y2 + bq, floor)
                            T2[yo + u(3 * CB)] = tiled.at_least(y3 + bq, floor)
                    for i in range(0, OUTPUT_TILE, pool):
                        r = th * OUTPUT_TILE + i
                        if r >= Ho:
                            break
                        for j in range(0, OUTPUT_TILE, pool):
                            col = tw * OUTPUT_TILE + j
                            if col >= Wo:
                                break
                            if pool > 1:  # the block's max into its first value (NaN wins, as in pooling)
                                for s in range(pool):
                                    for e in range(pool):
                                        if s + e > 0:
                                            at = u(((i + s) * 4 + j + e) * CB)
                                            for q in range(CB):
                                                yo = u((i * 4 + j) * CB + q)
                                                T2[yo] = tiled.larger(T2[yo], T2[at + u(q)])
                            oo, yo = u((((n * (Ho // pool)) + r // pool) * (Wo // pool) + col // pool) * K + k0), u(
                                (i * 4 + j) * CB)
                            if k0 + CB <= K:
                                for q in range(CB):
                                    out[oo + u(q)] = T2[yo + u(q)]
                            else:
                                for q in range(CB):
                                    if k0 + q < K:
                                        out[oo + u(q)] = T2[yo + u(q)]

    return kernel


@compiled
def _transform_filters(w, c, U):  # pragma: no cover - compiled
    """``U[8*a + b, d, k] = (G w[:, :, d, k] G^T)[a, b]``, zeros past K (U's filters padded): 16 filters at a
    time, G's rows written out (:func:`_filter_row`), from and to stack arrays (loops the loop vectoriser runs
    as vectors, as in the kernel)."""
    u = tiled.unsigned
    _, _, D, K = w.shape
    Kp = U.shape[2]
    plane = u(D * Kp)  # U's values of one transform point
    flat = U.reshape(-1)
    c2, c4, c8, c16, c32, c64, n29, r90 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
    last = tiled.carray(tiled.stack_array(400, U.dtype), (5, 5, 1, 16))  # the last filters, zeros past K
    rows = tiled.carray(tiled.stack_array(640, U.dtype), 640)  # (g G^T)[u, b]: (5 x 8) x 16
    for d in range(D):
        for k0 in range(0, Kp, 16):
            src, sd, sk = w, d, k0  # G along each filter row, read from w, or for the last filters
            if k0 + 16 > K:  # from a copy with zeros past K
                for r in range(5):
                    for v in range(5):
                        for q in range(16):
                            last[r, v, 0, q] = w[r, v, d, k0 + q] if k0 + q < K else 0
                src, sd, sk = last, 0, 0
            for r in range(5):
                ro = u(r * 128)
                for q in range(16):
                    uq, k = u(q), u(sk + q)
                    y0, y1, y2, y3, y4, y5, y6, y7 = _filter_row(
                        src[r, 0, sd, k], src[r, 1, sd, k], src[r, 2, sd, k], src[r, 3, sd, k], src[r, 4, sd, k],
                        c2, c4, c8, c16, c32, c64, n29, r90)
                    rows[ro + uq] = y0
                    rows[ro + u(16) + uq] = y1
                    rows[ro + u(32) + uq] = y2
                    rows[ro + u(48) + uq] = y3
                    rows[ro + u(64) + uq] = y4
                    rows[ro + u(80) + uq] = y5
                    rows[ro + u(96) + uq] = y6
                    rows[ro + u(112) + uq] = y7
            for b in range(8):
                o = u(b * 16)
                for q in range(16):
                    uq = u(q)
                    y0, y1, y2, y3, y4, y5, y6, y7 = _filter_row(
                        rows[o + uq], rows[o + u(128) + uq], rows[o + u(256) + uq], rows[o + u(384) + uq],
                        rows[o + u(512) + uq], c2, c4, c8, c16, c32, c64, n29, r90)
                    at = u((b * D + d) * Kp + k0) + uq
                    flat[at] = y0
                    flat[at + u(8) * plane] = y1
                    flat[at + u(16) * plane] = y2
                    flat[at + u(24) * plane] = y3
                    flat[at + u(32) * plane] = y4
                    flat[at + u(40) * plane] = y5
                    flat[at + u(48) * plane] = y6
                    flat[at + u(56) * plane] = y7


# B^T, A^T and G applied to a row, and a row's eight values stored (_compile_rows): the kernels' globals
_input_row = _output_row = _filter_row = _put_row = None


def _compile_rows() -> None:
    """Set :data:`_input_row`, :data:`_output_row`, :data:`_filter_row` and :data:`_put_row` (once), compiled inline
    into the kernels (by Numba: left to LLVM they stayed calls, and the kernel ran at half the speed);
    globals, so that the kernel's closure holds only its tile sizes (Numba keys its disk cache by the closure's
    values)."""
    global _input_row, _output_row, _filter_row, _put_row
    if _input_row is not None:
        return
    import numba

    tiled.numba_helpers()

    @numba.njit(inline="always")
    def input_row(x0, x1, x2, x3, x4, x5, x6, x7, c525, c425, c025, c125, c05, c25, c2, c4, c5):
        even1, odd1 = x2 + x6 - c425 * x4, x1 + x5 - c425 * x3  # pragma: no cover - compiled
        even3, odd3 = x6 + c025 * x2 - c125 * x4, c05 * x1 - c25 * x3 + c2 * x5
        even5, odd5 = x6 + c4 * x2 - c5 * x4, c2 * x1 - c25 * x3 + c05 * x5
        return (x6 - x0 + c525 * (x2 - x4), even1 + odd1, even1 - odd1, even3 + odd3, even3 - odd3,
                even5 + odd5, even5 - odd5, x7 - x1 + c525 * (x3 - x5))

    @numba.njit(inline="always")
    def output_row(m0, m1, m2, m3, m4, m5, m6, m7, c05, c025, c2, c4, c8, c0125):
        s1, d1, s2, d2, s3, d3 = m1 + m2, m1 - m2, m3 + m4, m3 - m4, m5 + m6, m5 - m6  # pragma: no cover
        return m0 + s1 + s2 + s3, d1 + c2 * d2 + c05 * d3, s1 + c4 * s2 + c025 * s3, d1 + c8 * d2 + c0125 * d3 + m7

    @numba.njit(inline="always")
    def filter_row(g0, g1, g2, g3, g4, c2, c4, c8, c16, c32, c64, n29, r90):
        even1, odd1 = g0 + g2 + g4, g1 + g3  # pragma: no cover - compiled
        even3, odd3 = g0 + c4 * g2 + c16 * g4, c2 * g1 + c8 * g3
        even5, odd5 = c64 * g0 + c16 * g2 + c4 * g4, c32 * g1 + c8 * g3
        return (-g0, n29 * (even1 + odd1), n29 * (even1 - odd1), r90 * (even3 + odd3), r90 * (even3 - odd3),
                r90 * (even5 + odd5), r90 * (even5 - odd5), g4)

    @numba.njit(inline="always")
    def put_row(row, at, step, y0, y1, y2, y3, y4, y5, y6, y7):  # pragma: no cover - compiled
        # (at and step unsigned, and so each sum of them: a product with a literal would be signed)
        two = step + step
        four = two + two
        row[at], row[at + step], row[at + two], row[at + two + step] = y0, y1, y2, y3
        row[at + four], row[at + four + step], row[at + four + two], row[at + four + two + step] = y4, y5, y6, y7

    _input_row, _output_row, _filter_row, _put_row = input_row, output_row, filter_row, put_row
