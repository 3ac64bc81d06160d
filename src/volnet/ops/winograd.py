"""Winograd F(2x2, 3x3): the 3x3 stride-1 CONV with 2.25x fewer multiply-adds (Lavin & Gray, 2015).

im2col computes every output value as one dot product of 9*D numbers. Winograd's
minimal filtering algorithm computes a 2x2 block of outputs from the 4x4 tile
of (padded) input under it with 16*D multiply-adds instead of 36*D::

    Y = A^T [ (G g G^T) * (B^T d B) ] A,   summed over the input depth

where d is one depth slice of the 4x4 tile, g the matching 3x3 slice of one
filter, ``*`` the elementwise product, and B^T (4x4), G (4x3), A^T (2x4) the
constant matrices below. Summed over the depth, the 16 elementwise products
become 16 matrix multiplies ``V[a] @ U[a]``, ``(tiles, D) @ (D, K)``, which
BLAS does. Output tiles sticking out past an odd-sized output read zeros and
are cut off.

The transforms of the tiles (``B^T d B``, ``A^T M A``) are sums and
differences of whole depth columns. NumPy needs about twenty strided passes
for them, so they are compiled with Numba, which vectorises each loop over
the depth (the gain: docs/performance-log.md). Numba is an
optional dependency (``pip install numba``, or the ``fast`` extra): without it, or with
``VOLNET_NUMBA=0``, :func:`applies` is False and ``volnet.ops.conv`` takes
im2col for every 3x3 layer, with the same results up to float rounding.
(5x5 layers have :mod:`volnet.ops.winograd_5x5`, whose transforms are
NumPy multiplies.)

:mod:`volnet.ops.conv` uses this for 3x3 stride-1 undilated layers at least
:data:`MIN_DEPTH` deep, on batches of at least :data:`MIN_TILES` output
tiles: the forward pass, the input gradient (a convolution of dout with the
flipped filters, which is again 3x3 stride 1) and the weight gradient. Every function here works a block of images at a time, so
the transformed tiles stay in cache between transform and multiply, and
can split the batch over the cores (:func:`workers`, :mod:`volnet.ops.threads`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading

import numpy as np

from . import threads

# Whether Numba is installed, asked without importing it: importing Numba takes
# about 0.3 s, so it happens at the first Winograd call (see compiled), not at
# `import volnet`. Without it every CONV takes im2col.
ENABLED = (importlib.util.find_spec("numba") is not None
           and os.environ.get("VOLNET_NUMBA", "1").strip() != "0")

# The multiplies have D (forward) or K (input gradient) as their inner size;
# for shallow inputs they are too thin for BLAS and im2col is faster (the
# bound is conv's SHALLOW_DEPTH, where its own schemes switch for the same
# reason; the figures: docs/performance-log.md).
MIN_DEPTH = 8
# Every call transforms the filters, 16 numbers per (input channel, filter) where im2col reads 9, and a
# call with few output tiles has little multiply-add work to save against that: its sixteen multiplies
# have only a few rows each (tiles), and are bound by reading the transformed filters (measured on batch-1
# ResNet stages: docs/performance-log.md). The break-even is a count of tiles over which the transform is
# shared, not a machine's speed.
MIN_TILES = 32
# Layers whose multiplies give results smaller than this (D*K numbers) are "thin":
# BLAS runs them at about half its rate and cannot spread them over the cores, so
# the batch is split over the cores instead (volnet.ops.threads); where only one
# core is free, their weight gradient takes im2col, whose one multiply per block
# is faster than Winograd's sixteen thin ones.
THIN_MULTIPLY = 64 * 64

# G maps a 3-tap filter row to its 4 transformed values: U = G g G^T.
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
G_KRON_G = np.kron(G, G)  # U[4a+b] = sum over (u, v) of G[a, u] G[b, v] g[3u+v]: both sides of G g G^T
# B^T d B and A^T M A are written out as sums and differences in the kernels below:
# B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],  A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].


def applies(g, depth: int, dtype) -> bool:
    """Whether the correlation with geometry ``g`` over ``depth`` input channels takes Winograd: a 3x3
    stride-1 undilated float layer at least :data:`MIN_DEPTH` deep, whose batch has at least :data:`MIN_TILES`
    output tiles (:func:`tile_count`) to share the cost of transforming the filters."""
    return (ENABLED and g.size == (3, 3) and g.stride == (1, 1) and g.dilation == (1, 1)
            and depth >= MIN_DEPTH and np.dtype(dtype) in (np.float32, np.float64)
            and tile_count(g) >= MIN_TILES)


def tile_count(g) -> int:
    """The 2x2 output tiles of a whole batch: ``N * ceil(H2/2) * ceil(W2/2)``."""
    Ht, Wt = tiles(g.out_hw)
    return g.in_shape[0] * Ht * Wt


def applies_to_weight_gradient(g, depth: int, filters: int, dtype, workers: int) -> bool:
    """Whether dw of such a layer, split over ``workers`` threads (:func:`workers`), takes :func:`weight_gradient`.

    Its multiplies give D x K results. Thin ones (under :data:`THIN_MULTIPLY`)
    on one thread lose to im2col's dw, whose one multiply per block beats
    sixteen thin ones; split over the cores they win, and wider ones win on
    one thread too (the figures: docs/performance-log.md).
    """
    return applies(g, depth, dtype) and (depth * filters >= THIN_MULTIPLY or workers > 1)


def workers(images: int, out_hw, depth: int, filters: int, network_pass: bool = False,
            cores: int | None = None) -> int:
    """How many threads :func:`correlate` and :func:`weight_gradient` split a batch of ``images`` over.

    Every one of ``cores`` (None: :func:`volnet.ops.threads.cores`) within a
    network pass (``network_pass``: BLAS held to one thread, see
    :class:`volnet.ops.threads.Workers`), and for thin multiplies; but no part
    smaller than :func:`volnet.ops.threads.workers_for` allows. Otherwise one:
    deep layers called on their own keep BLAS's threads, which already use
    the cores, and splitting them as well only adds contention (the figures:
    docs/performance-log.md).
    """
    if not (network_pass or depth * filters < THIN_MULTIPLY):
        return 1
    multiply_adds = images * out_hw[0] * out_hw[1] * 9 * depth * filters
    return threads.workers_for(multiply_adds, images, threads.cores() if cores is None else cores)


def tiles(out_hw) -> tuple[int, int]:
    """How many 2x2 output tiles cover an output of ``(H2, W2)``: ``(ceil(H2/2), ceil(W2/2))``."""
    return -(-out_hw[0] // 2), -(-out_hw[1] // 2)


def bytes_per_image(out_hw, depth: int, filters: int, itemsize: int) -> int:
    """The transformed tiles of one image: V ``(16, tiles, D)`` and M ``(16, tiles, K)``."""
    Ht, Wt = tiles(out_hw)
    return 16 * Ht * Wt * (depth + filters) * itemsize


# -- the memory these kernels allocate (volnet.ops.workspace; volnet.analysis replays it) --------------

def workspace(out_hw, depth: int, filters: int, images: int, itemsize: int, cores: int, block_bytes: int,
              weight_gradient: bool = False) -> int:
    """Bytes :func:`correlate` (or :func:`weight_gradient`) allocates beside its result, within a network pass.

    Each thread's block of transformed tiles (V and M, or V and dM) and
    scratch rows of the transforms; the transformed filters U (correlate), or
    each thread's dU and one block's share of it, and the ones that sum db
    (weight_gradient). ``block_bytes`` is ``volnet.ops.conv_rows.BLOCK_BYTES``.
    """
    from .workspace import part_sizes, split_blocks

    b = itemsize
    Ht, Wt = tiles(out_hw)
    Wp = out_hw[1] + 2
    per_image = bytes_per_image(out_hw, depth, filters, b)
    threads_used = len(part_sizes(images, workers(images, out_hw, depth, filters, network_pass=True, cores=cores)))
    blocks = split_blocks(images, per_image, block_bytes, threads_used) * per_image
    rows = 4 * (Wp + 1) * depth + Wp * depth
    if weight_gradient:
        scratch = rows + 4 * 2 * Wt * filters + out_hw[1] * filters + 2 * 16 * depth * filters
        return blocks + (threads_used * scratch + images * out_hw[0] * out_hw[1]) * b
    return blocks + (threads_used * (rows + 2 * 4 * Wt * filters) + 16 * depth * filters) * b


def filter_transform(w: np.ndarray, dtype) -> np.ndarray:
    """``U[a, b] = G w G^T`` for every (input channel, filter): ``(3, 3, D, K)`` -> ``(16, D, K)``.

    Both sides at once: with the 3x3 taps as one axis, ``U = (G kron G) w``, a
    (16, 9) matrix times w (one multiply instead of G on each side in turn: docs/performance-log.md).
    """
    D, K = w.shape[2:]
    return (G_KRON_G.astype(dtype) @ w.astype(dtype, copy=False).reshape(9, D * K)).reshape(16, D, K)


def correlate(xp: np.ndarray, w: np.ndarray, bias=None, relu: bool = False, images_per_block: int = 1,
              workers: int = 1, *, blas_held: bool = False):
    """``(N, H2, W2, K)``: the 3x3 correlation of a padded batch ``xp (N, H2+2, W2+2, D)`` with ``w (3, 3, D, K)``.

    Adds ``bias (K,)`` and rectifies (``relu``) in the output transform, while
    the block is in cache. ``workers`` threads take a part of the batch each
    (:func:`volnet.ops.threads.split`; ``blas_held``: within a network pass),
    ``images_per_block`` images at a time.
    """
    dtype = np.result_type(xp, w)
    xp = np.ascontiguousarray(xp, dtype=dtype)
    N, Hp, Wp, D = xp.shape
    K = w.shape[3]
    Ho, Wo = Hp - 2, Wp - 2
    Ht, Wt = tiles((Ho, Wo))
    U = filter_transform(w, dtype)
    b = np.zeros(K, dtype) if bias is None else np.asarray(bias, dtype=dtype)
    floor = dtype.type(0 if relu else -np.inf)  # max(y, floor): the ReLU, or nothing
    out = np.empty((N, Ho, Wo, K), dtype)

    def correlate_part(start, stop):
        rows, zero_row = np.zeros((4, Wp + 1, D), dtype), np.zeros((Wp, D), dtype)
        columns = np.empty((2, 4, Wt, K), dtype)
        blocks = _tile_blocks(start, stop, images_per_block, Ht * Wt, D, K, dtype)
        yield  # allocated (see threads.split)
        for first, V, M in blocks:
            _input_transform(xp, first, V, Ht, Wt, rows, zero_row)
            np.matmul(V, U, out=M)
            _output_transform(M, b, floor, out, first, Ht, Wt, columns)

    threads.split(correlate_part, N, workers, blas_held=blas_held)
    return out


def weight_gradient(xp: np.ndarray, dout: np.ndarray, images_per_block: int = 1, workers: int = 1, *,
                    blas_held: bool = False):
    """``(dw (3, 3, D, K), db (K,))`` of the correlation :func:`correlate` computes, from its input and ``dout``.

    The backward pass of ``Y = A^T M A`` with ``M[a] = V[a] @ U[a]``: dout's
    2x2 tiles go back through the output transform (``dM = A dY A^T``),
    ``dU[a] = V[a].T @ dM[a]`` sums over every tile, and ``dw = G^T dU G``
    undoes the filter transform. db is dout's sum over the positions. Each
    of ``workers`` threads sums dU and db over its part of the batch (db
    there too: a BLAS call on all cores between two splits leaves BLAS's
    threads spinning on the cores the next split needs); ``blas_held`` as in :func:`correlate`.
    """
    dtype = np.result_type(xp, dout)
    xp = np.ascontiguousarray(xp, dtype=dtype)
    dout = np.ascontiguousarray(dout, dtype=dtype)
    N, Hp, Wp, D = xp.shape
    K = dout.shape[3]
    Ht, Wt = tiles(dout.shape[1:3])

    def weight_gradient_part(start, stop):
        rows, zero_row = np.zeros((4, Wp + 1, D), dtype), np.zeros((Wp, D), dtype)
        dout_rows, zero_dout = np.zeros((4, 2 * Wt, K), dtype), np.zeros(dout.shape[2:], dtype)
        dU = np.zeros((16, D, K), dtype)
        blocks = _tile_blocks(start, stop, images_per_block, Ht * Wt, D, K, dtype)
        yield  # allocated (see threads.split)
        for first, V, dM in blocks:
            _input_transform(xp, first, V, Ht, Wt, rows, zero_row)
            _output_transform_backward(dout, first, dM, Ht, Wt, dout_rows, zero_dout)
            dU += np.matmul(V.transpose(0, 2, 1), dM)
        positions = dout[start:stop].reshape(-1, K)
        return dU, np.ones(len(positions), dtype) @ positions  # db: the column sums, in BLAS

    (dU, db), *others = threads.split(weight_gradient_part, N, workers, blas_held=blas_held)
    for part_dU, part_db in others:
        dU += part_dU
        db += part_db
    dw = G_KRON_G.astype(dtype).T @ dU.reshape(16, D * K)  # the filter transform's transpose
    return dw.reshape(3, 3, D, K), db


def _tile_blocks(start: int, stop: int, images_per_block: int, tiles_per_image: int, depth: int, filters: int,
                 dtype) -> list:
    """``[(first image, V (16, tiles, D), M (16, tiles, K))]`` for each block of images ``start..stop-1``.

    V and M are views of two buffers allocated here for the largest block,
    so each block's must be used before the next one's.
    """
    images_per_block = max(1, min(images_per_block, stop - start))
    V_buffer = np.empty(16 * images_per_block * tiles_per_image * depth, dtype)
    M_buffer = np.empty(16 * images_per_block * tiles_per_image * filters, dtype)
    blocks = []
    for first in range(start, stop, images_per_block):
        t = min(images_per_block, stop - first) * tiles_per_image
        blocks.append((first, V_buffer[: 16 * t * depth].reshape(16, t, depth),
                       M_buffer[: 16 * t * filters].reshape(16, t, filters)))
    return blocks


def compiled(function):
    """A kernel Numba compiles (cached on disk) at its first call, when Numba is first imported.

    Called only where :data:`ENABLED`; the wrapper costs one Python call per
    block of images, next to a compiled loop over the whole block.
    """
    jitted = None
    compiling = threading.Lock()  # the parts of a split (volnet.ops.threads) may make the first call together

    @functools.wraps(function)
    def kernel(*args):
        nonlocal jitted
        if jitted is None:
            with compiling:
                if jitted is None:
                    import numba

                    jitted = numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")(function)
        return jitted(*args)

    return kernel


# The kernels loop over the depth innermost, one output array per loop, so that
# LLVM vectorises every loop (more arrays per loop exceed its alias-check budget
# and it falls back to scalar code, several times slower). Scratch rows come in
# from NumPy: large allocations inside compiled code are slow on these machines.

@compiled
def _input_transform(xp, first, V, Ht, Wt, rows, zero_row):  # pragma: no cover - compiled; tested via correlate
    """``V[4i+j, tile, :] = (B^T d B)[i, j]`` for every 4x4 tile d of images ``first, first+1, ...``.

    ``rows (4, Wp+1, D)`` holds ``B^T d`` for one row of tiles (its last column stays zero: the tile
    past an odd width); ``zero_row (Wp, D)`` stands in for the row past an odd height.
    """
    Hp, Wp, D = xp.shape[1], xp.shape[2], xp.shape[3]
    images = V.shape[1] // (Ht * Wt)
    for m in range(images):
        image = xp[first + m]
        for ty in range(Ht):
            y = 2 * ty
            x0, x1, x2 = image[y], image[y + 1], image[y + 2]
            x3 = image[y + 3] if y + 3 < Hp else zero_row
            for q in range(Wp):  # B^T down the columns: d0 - d2, d1 + d2, d2 - d1, d1 - d3
                for c in range(D):
                    rows[0, q, c] = x0[q, c] - x2[q, c]
                for c in range(D):
                    rows[1, q, c] = x1[q, c] + x2[q, c]
                for c in range(D):
                    rows[2, q, c] = x2[q, c] - x1[q, c]
                for c in range(D):
                    rows[3, q, c] = x1[q, c] - x3[q, c]
            t0 = (m * Ht + ty) * Wt
            for i in range(4):  # ... and along each row: B
                for tx in range(Wt):
                    q, t = 2 * tx, t0 + tx
                    for c in range(D):
                        V[4 * i, t, c] = rows[i, q, c] - rows[i, q + 2, c]
                    for c in range(D):
                        V[4 * i + 1, t, c] = rows[i, q + 1, c] + rows[i, q + 2, c]
                    for c in range(D):
                        V[4 * i + 2, t, c] = rows[i, q + 2, c] - rows[i, q + 1, c]
                    for c in range(D):
                        V[4 * i + 3, t, c] = rows[i, q + 1, c] - rows[i, q + 3, c]


@compiled
def _output_transform(M, bias, floor, out, first, Ht, Wt, columns):  # pragma: no cover - compiled
    """``out[2ty+p, 2tx+q] = max((A^T M A)[p, q] + bias, floor)`` for every tile, cut at the output's edge.

    ``columns (2, 4, Wt, K)`` holds ``A^T M`` for one row of tiles.
    """
    Ho, Wo, K = out.shape[1], out.shape[2], out.shape[3]
    images = M.shape[1] // (Ht * Wt)
    for m in range(images):
        image = out[first + m]
        for ty in range(Ht):
            t0 = (m * Ht + ty) * Wt
            for j in range(4):  # A^T down the columns: m0 + m1 + m2, m1 - m2 - m3
                for tx in range(Wt):
                    for k in range(K):
                        columns[0, j, tx, k] = M[j, t0 + tx, k] + M[4 + j, t0 + tx, k] + M[8 + j, t0 + tx, k]
                    for k in range(K):
                        columns[1, j, tx, k] = M[4 + j, t0 + tx, k] - M[8 + j, t0 + tx, k] - M[12 + j, t0 + tx, k]
            for p in range(2):  # ... and along each row: A
                y = 2 * ty + p
                if y >= Ho:
                    break
                s = columns[p]
                for tx in range(Wt):
                    q = 2 * tx
                    for k in range(K):
                        image[y, q, k] = max(s[0, tx, k] + s[1, tx, k] + s[2, tx, k] + bias[k], floor)
                    if q + 1 < Wo:
                        for k in range(K):
                            image[y, q + 1, k] = max(s[1, tx, k] - s[2, tx, k] - s[3, tx, k] + bias[k], floor)


@compiled
def _output_transform_backward(dout, first, dM, Ht, Wt, dout_rows, zero_dout):  # pragma: no cover - compiled
    """``dM[4i+j, tile, :] = (A dY A^T)[i, j]`` for every 2x2 tile dY of dout (zeros past its edge).

    ``dout_rows (4, 2*Wt, K)`` holds ``A dY`` for one row of tiles (the column past an odd width stays
    zero); ``zero_dout (W2, K)`` stands in for the row past an odd height.
    """
    Ho, Wo, K = dout.shape[1], dout.shape[2], dout.shape[3]
    images = dM.shape[1] // (Ht * Wt)
    for m in range(images):
        image = dout[first + m]
        for ty in range(Ht):
            y = 2 * ty
            d0 = image[y]
            d1 = image[y + 1] if y + 1 < Ho else zero_dout
            for q in range(Wo):  # A down the columns: d0, d0 + d1, d0 - d1, -d1
                for k in range(K):
                    dout_rows[0, q, k] = d0[q, k]
                for k in range(K):
                    dout_rows[1, q, k] = d0[q, k] + d1[q, k]
                for k in range(K):
                    dout_rows[2, q, k] = d0[q, k] - d1[q, k]
                for k in range(K):
                    dout_rows[3, q, k] = -d1[q, k]
            t0 = (m * Ht + ty) * Wt
            for i in range(4):  # ... and along each row: A^T
                for tx in range(Wt):
                    q, t = 2 * tx, t0 + tx
                    for k in range(K):
                        dM[4 * i, t, k] = dout_rows[i, q, k]
                    for k in range(K):
                        dM[4 * i + 1, t, k] = dout_rows[i, q, k] + dout_rows[i, q + 1, k]
                    for k in range(K):
                        dM[4 * i + 2, t, k] = dout_rows[i, q, k] - dout_rows[i, q + 1, k]
                    for k in range(K):
                        dM[4 * i + 3, t, k] = -dout_rows[i, q + 1, k]
