"""Winograd's minimal filtering: the 3x3 stride-1 CONV with 2.25-4x fewer multiply-adds (Lavin & Gray, 2015).

im2col computes every output value as one dot product of 9*D numbers.
Winograd's F(m x m, 3x3) computes an m x m block of outputs from the
(m+2) x (m+2) tile of (padded) input under it::

    Y = A^T [ (G g G^T) * (B^T d B) ] A,   summed over the input depth

where d is one depth slice of the tile, g the matching 3x3 slice of one
filter, ``*`` the elementwise product, and B^T, G, A^T constant matrices
(:mod:`volnet.ops.winograd_tiles`). Summed over the depth, the (m+2)^2
elementwise products become as many matrix multiplies ``V[a] @ U[a]``,
``(tiles, D) @ (D, K)``, which BLAS does. Output tiles sticking out past the
output's edge read zeros and are cut off.

Two tile sizes (:func:`tiling`): F(4x4, 3x3), 36 multiply-adds per input
channel for 16 outputs where im2col does 144, for outputs at least
:data:`MIN_F4_SIDE` on each side in batches with enough of its tiles;
F(2x2, 3x3), 16 for 4, for the others, where F(4x4)'s 2.25x larger
transformed filters would be read for a few tiles each. F(4x4)'s larger coefficients leave float32 results about 1e-6 of
the largest output off, F(2x2)'s 1e-7 (the measurements behind both
choices: docs/performance-log.md).

The tile transforms are compiled with Numba (:mod:`volnet.ops.jit`): without
it, or with ``VOLNET_NUMBA=0``, :func:`applies` is False and
``volnet.ops.conv`` takes im2col for every 3x3 layer, with the same results
up to float rounding. (5x5 layers have :mod:`volnet.ops.winograd_5x5`, whose
transforms are NumPy multiplies.)

:mod:`volnet.ops.conv` uses this for 3x3 stride-1 undilated layers at least
:data:`MIN_DEPTH` deep, on batches of at least :data:`MIN_IMAGES` images and
:data:`MIN_TILES` output tiles: the forward pass, the input gradient (a convolution of dout with the
flipped filters, which is again 3x3 stride 1) and the weight gradient. Every
function here works a block of images at a time, so the transformed tiles
stay in cache between transform and multiply, and can split the batch over
the cores (:func:`workers`, :mod:`volnet.ops.threads`).
"""

from __future__ import annotations

import numpy as np

from . import threads
from .jit import ENABLED
from .two_sided import two_sided
from .winograd_tiles import F2, F4, Tiling

# The multiplies have D (forward) or K (input gradient) as their inner size;
# for shallow inputs they are too thin for BLAS and im2col is faster (the
# bound is conv's SHALLOW_DEPTH, where its own schemes switch for the same
# reason; the figures: docs/performance-log.md).
MIN_DEPTH = 8
# Every call transforms the filters, (m+2)^2 numbers per (input channel, filter) where im2col reads 9, and a
# batch with few output tiles has little multiply-add work to save against that; each algorithm needs at
# least this many of its tiles in the batch. The break-even is a count of tiles over which the transform is
# shared, not a machine's speed: on the Intel Xeon F(2x2) passed im2col between 256 and 512 outputs (64-128
# tiles), F(4x4) passed F(2x2) between 1024 and 2048 (64-128 tiles), on every depth measured.
MIN_TILES = 128
# A batch of one image runs Winograd on one core, where im2col's multiply runs on all of BLAS's: at batch 1
# im2col was 1.3-3x faster on every ResNet layer measured (docs/performance-log.md).
MIN_IMAGES = 2
# F(4x4, 3x3) for outputs at least this many values on each side (4 tiles an image at least), F(2x2, 3x3)
# below: on 4x4 outputs F(4x4) was no faster than F(2x2) at any batch (docs/performance-log.md).
MIN_F4_SIDE = 8
# Where dU (the weight gradient's transformed filters) passes this many bytes, its split over the cores
# divides the multiplies by transformed point (each core sums its share of the points of dU over every
# image of a round) rather than by image (each core sums all of dU over its own images, and the cores'
# sums are added after): one dU, each part of it in one core's cache, and no sum of the cores' copies.
# Deep layers' backward passes took 0.5-0.95x the time (the figures: docs/performance-log.md); forward
# passes split by point ran no faster, so they split by image.
POINT_SPLIT_BYTES = 4 * 2**20
# Layers whose multiplies give results smaller than this (D*K numbers) are "thin":
# BLAS runs them at about half its rate and cannot spread them over the cores, so
# the batch is split over the cores instead (volnet.ops.threads); where only one
# core is free, their weight gradient takes im2col, whose one multiply per block
# is faster than Winograd's many thin ones.
THIN_MULTIPLY = 64 * 64


def tiling(out_hw, images: int) -> Tiling:
    """The algorithm for ``images`` outputs of ``(H2, W2)``: F(4x4, 3x3) from :data:`MIN_F4_SIDE` on where the
    batch has :data:`MIN_TILES` of its tiles, else F(2x2, 3x3)."""
    if min(out_hw) >= MIN_F4_SIDE and images * _tiles(out_hw, F4.tile) >= MIN_TILES:
        return F4
    return F2


def _tiles(out_hw, m: int) -> int:
    return -(-out_hw[0] // m) * -(-out_hw[1] // m)


def applies(g, depth: int, dtype) -> bool:
    """Whether the correlation with geometry ``g`` over ``depth`` input channels takes Winograd: a 3x3
    stride-1 undilated float layer at least :data:`MIN_DEPTH` deep, whose batch of at least :data:`MIN_IMAGES`
    images has at least :data:`MIN_TILES` output tiles (:func:`tile_count`) to share the cost of transforming
    the filters."""
    return (ENABLED and g.size == (3, 3) and g.stride == (1, 1) and g.dilation == (1, 1)
            and depth >= MIN_DEPTH and np.dtype(dtype) in (np.float32, np.float64)
            and g.in_shape[0] >= MIN_IMAGES and tile_count(g) >= MIN_TILES)


def tile_count(g) -> int:
    """The output tiles of a whole batch: ``N * ceil(H2/m) * ceil(W2/m)``, m the :func:`tiling`'s tile."""
    N = g.in_shape[0]
    Ht, Wt = tiles(g.out_hw, N)
    return N * Ht * Wt


def applies_to_weight_gradient(g, depth: int, filters: int, dtype, workers: int) -> bool:
    """Whether dw of such a layer, split over ``workers`` threads (:func:`workers`), takes :func:`weight_gradient`.

    Its multiplies give D x K results. Thin ones (under :data:`THIN_MULTIPLY`)
    on one thread lose to im2col's dw, whose one multiply per block beats
    many thin ones; split over the cores they win, and wider ones win on
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
    where BLAS keeps its own threads (workers that do not hold it, as a call
    from a thread that could not hold the cores gets), those threads already
    use the cores, and splitting the batch as well only adds contention (the
    figures: docs/performance-log.md). ``conv_forward`` called on its own holds
    them (:func:`volnet.ops.threads.kernel_workers`).
    """
    if not (network_pass or depth * filters < THIN_MULTIPLY):
        return 1
    multiply_adds = images * out_hw[0] * out_hw[1] * 9 * depth * filters
    return threads.workers_for(multiply_adds, images, threads.cores() if cores is None else cores)


def tiles(out_hw, images: int) -> tuple[int, int]:
    """How many m x m output tiles cover an output of ``(H2, W2)`` (in a batch of ``images``, whose
    :func:`tiling` gives m): ``(ceil(H2/m), ceil(W2/m))``."""
    m = tiling(out_hw, images).tile
    return -(-out_hw[0] // m), -(-out_hw[1] // m)


def bytes_per_image(out_hw, images: int, depth: int, filters: int, itemsize: int) -> int:
    """The transformed tiles of one image of a batch of ``images``: V ``((m+2)^2, tiles, D)`` and M
    ``((m+2)^2, tiles, K)``."""
    Ht, Wt = tiles(out_hw, images)
    return tiling(out_hw, images).points * Ht * Wt * (depth + filters) * itemsize


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

    b, t = itemsize, tiling(out_hw, images)
    Ht, Wt = tiles(out_hw, images)
    per_image = bytes_per_image(out_hw, images, depth, filters, b)
    threads_used = len(part_sizes(images, workers(images, out_hw, depth, filters, network_pass=True, cores=cores)))
    blocks = split_blocks(images, per_image, block_bytes, threads_used) * per_image
    rows = t.span * (t.tile * Wt + 2) * depth + (out_hw[1] + 2) * depth  # _input_scratch
    if weight_gradient:
        scratch = rows + t.span * t.tile * Wt * filters + out_hw[1] * filters
        if _by_points(t.points * depth * filters * b, threads_used):  # one dU, and each thread's product
            sums = (t.points + threads_used) * depth * filters
        else:  # each thread's dU and product
            sums = threads_used * 2 * t.points * depth * filters
        return blocks + (threads_used * scratch + sums + images * out_hw[0] * out_hw[1]) * b
    return blocks + (threads_used * (rows + t.tile * t.span * Wt * filters) + t.points * depth * filters) * b


def filter_transform(w: np.ndarray, dtype, t: Tiling, workers=threads.SERIAL, flipped: bool = False) -> np.ndarray:
    """``U[a, b] = G w G^T`` for every (input channel, filter): ``(3, 3, D, K)`` -> ``((m+2)^2, D, K)``, by
    :func:`volnet.ops.two_sided.two_sided` (compiled, G on one side then the other), its columns split over
    ``workers`` (a :class:`~volnet.ops.threads.Workers`).

    ``flipped``: the transform of ``w`` flipped in space and transposed, ``((m+2)^2, K, D)``, an input
    gradient's, without a flipped copy of w (ResNet's 3x3 512 -> 512: 9.4 MB, 1.1 ms): the flip reverses the
    taps, which G's reversed columns do, and the transposition is a view that BLAS reads as such (its multiplies
    then took about 1.2x as long on the Intel Xeon; the input gradient of 4x4x512 -> 512 at batch 32 still
    10.2 -> 8.9 ms).
    """
    D, K = w.shape[2:]
    G = t.G[:, ::-1] if flipped else t.G  # the flip in space reverses each side's taps
    U = two_sided(G, w.astype(dtype, copy=False).reshape(9, D * K), workers).reshape(t.points, D, K)
    return U.transpose(0, 2, 1) if flipped else U


def correlate(xp: np.ndarray, w: np.ndarray, bias=None, relu: bool = False, images_per_block: int = 1,
              workers: int = 1, *, blas_held: bool = False, fill=None, flipped: bool = False):
    """``(N, H2, W2, K)``: the 3x3 correlation of a padded batch ``xp (N, H2+2, W2+2, D)`` with ``w (3, 3, D, K)``,
    or (``flipped``) with ``w (3, 3, K, D)`` flipped in space and transposed (an input gradient's filters).

    Adds ``bias (K,)`` and rectifies (``relu``) in the output transform, while
    the block is in cache. ``workers`` threads take a part of the batch each
    (:func:`volnet.ops.threads.split`; ``blas_held``: within a network pass),
    ``images_per_block`` images at a time.
    ``fill``: where given, ``fill(start, stop)`` first writes those images of ``xp``
    (:func:`volnet.ops.window.pad_images`), in each part of the split.
    """
    dtype = np.result_type(xp, w)
    xp = xp if fill else np.ascontiguousarray(xp, dtype=dtype)
    N, Hp, Wp, D = xp.shape
    K = w.shape[2 if flipped else 3]
    Ho, Wo = Hp - 2, Wp - 2
    t = tiling((Ho, Wo), N)
    Ht, Wt = tiles((Ho, Wo), N)
    U = filter_transform(w, dtype, t, threads.Workers(workers, blas_held=blas_held), flipped)
    b = np.zeros(K, dtype) if bias is None else np.asarray(bias, dtype=dtype)
    floor = dtype.type(0 if relu else -np.inf)  # max(y, floor): the ReLU, or nothing
    out = np.empty((N, Ho, Wo, K), dtype)

    def correlate_part(start, stop):
        rows, zero_row = _input_scratch(t, Wp, Wt, D, dtype)
        columns = np.empty((t.tile, t.span, Wt, K), dtype)
        blocks = _tile_blocks(t, start, stop, images_per_block, Ht * Wt, D, K, dtype)
        yield  # allocated (see threads.split)
        if fill:
            fill(start, stop)
        for first, V, M in blocks:
            t.input_transform(xp, first, V, Ht, Wt, rows, zero_row)
            np.matmul(V, U, out=M)
            t.output_transform(M, b, floor, out, first, Ht, Wt, columns)

    threads.split(correlate_part, N, workers, blas_held=blas_held)
    return out


def weight_gradient(xp: np.ndarray, dout: np.ndarray, images_per_block: int = 1, workers: int = 1, *,
                    blas_held: bool = False):
    """``(dw (3, 3, D, K), db (K,))`` of the correlation :func:`correlate` computes, from its input and ``dout``.

    The backward pass of ``Y = A^T M A`` with ``M[a] = V[a] @ U[a]``: dout's
    tiles go back through the output transform (``dM = A dY A^T``),
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
    t = tiling(dout.shape[1:3], N)
    Ht, Wt = tiles(dout.shape[1:3], N)
    if _by_points(t.points * D * K * dtype.itemsize, workers):
        dU = np.empty((t.points, D, K), dtype)  # the first round's first product writes it (no zeroing pass)
        parts = [_Part(t, images_per_block, Ht, Wt, Wp, D, K, dout.shape[2], dtype) for _ in range(workers)]

        def transform(p):
            t.input_transform(xp, p.first, p.V, Ht, Wt, p.rows, p.zero_row)
            t.output_transform_backward(dout, p.first, p.M, Ht, Wt, p.dout_rows, p.zero_dout)

        def multiply(a):
            for index, p in enumerate(work):
                if first_round and index == 0:
                    np.matmul(p.V[a].T, p.M[a], out=dU[a])
                else:
                    dU[a] += p.V[a].T @ p.M[a]

        for round_index, work in enumerate(_rounds(parts, N, images_per_block)):
            first_round = round_index == 0
            _each(transform, work, blas_held)
            _each(multiply, range(t.points), blas_held, workers)
        positions = dout.reshape(-1, K)
        return _filter_gradient(t, dU, threads.Workers(workers, blas_held=blas_held)), \
            np.ones(len(positions), dtype) @ positions

    def weight_gradient_part(start, stop):
        rows, zero_row = _input_scratch(t, Wp, Wt, D, dtype)
        dout_rows, zero_dout = np.zeros((t.span, t.tile * Wt, K), dtype), np.zeros(dout.shape[2:], dtype)
        dU = np.zeros((t.points, D, K), dtype)
        blocks = _tile_blocks(t, start, stop, images_per_block, Ht * Wt, D, K, dtype)
        yield  # allocated (see threads.split)
        for first, V, dM in blocks:
            t.input_transform(xp, first, V, Ht, Wt, rows, zero_row)
            t.output_transform_backward(dout, first, dM, Ht, Wt, dout_rows, zero_dout)
            dU += np.matmul(V.transpose(0, 2, 1), dM)
        positions = dout[start:stop].reshape(-1, K)
        return dU, np.ones(len(positions), dtype) @ positions  # db: the column sums, in BLAS

    (dU, db), *others = threads.split(weight_gradient_part, N, workers, blas_held=blas_held)
    for part_dU, part_db in others:
        dU += part_dU
        db += part_db
    return _filter_gradient(t, dU, threads.Workers(workers, blas_held=blas_held)), db


def _filter_gradient(t: Tiling, dU: np.ndarray, workers) -> np.ndarray:
    """dw ``(3, 3, D, K)`` from dU ``(points, D, K)``: the filter transform's transpose (split as there)."""
    points, D, K = dU.shape
    return two_sided(t.G.T, dU.reshape(points, D * K), workers).reshape(3, 3, D, K)


# -- the weight gradient's split by transformed point (POINT_SPLIT_BYTES) --------------------------------

def _by_points(dU_bytes: int, workers: int) -> bool:
    """Whether the weight gradient's split over ``workers`` threads divides its multiplies by point."""
    return workers > 1 and dU_bytes > POINT_SPLIT_BYTES


class _Part:
    """One thread's share of a round in the weight gradient's split by point: V and dM (``M``) for up to
    ``images`` images, which that thread transforms, and the two transforms' scratch."""

    def __init__(self, t: Tiling, images: int, Ht: int, Wt: int, Wp: int, depth: int, filters: int,
                 dout_width: int, dtype):
        (_, self._V, self._M), = _tile_blocks(t, 0, images, images, Ht * Wt, depth, filters, dtype)
        self._tiles_per_image = Ht * Wt
        self.rows, self.zero_row = _input_scratch(t, Wp, Wt, depth, dtype)
        self.dout_rows = np.zeros((t.span, t.tile * Wt, filters), dtype)
        self.zero_dout = np.zeros((dout_width, filters), dtype)
        self.first, self.V, self.M = 0, self._V, self._M

    def take(self, first: int, images: int) -> "_Part":
        """This part for ``images`` images from image ``first`` on: V and M are views of its buffers."""
        tiles = images * self._tiles_per_image
        points = self._V.shape[0]
        self.first = first
        self.V = self._V.reshape(-1)[: points * tiles * self._V.shape[2]].reshape(points, tiles, -1)
        self.M = self._M.reshape(-1)[: points * tiles * self._M.shape[2]].reshape(points, tiles, -1)
        return self


def _rounds(parts: list, N: int, images_per_block: int):
    """For each round of the batch, the parts that work in it, each taken for its images (up to
    ``images_per_block`` each, as many parts as there are images)."""
    size = images_per_block * len(parts)
    for first in range(0, N, size):
        spans = threads.parts(min(size, N - first), len(parts))
        yield [part.take(first + a, b - a) for part, (a, b) in zip(parts, spans)]


def _each(work, items, blas_held: bool, workers: int | None = None):
    """``work(item)`` for every item, the items split over ``workers`` threads (one item each by default)."""
    items = list(items)

    def part(start, stop):
        yield
        for item in items[start:stop]:
            work(item)

    threads.split(part, len(items), workers or len(items), blas_held=blas_held)


def _input_scratch(t: Tiling, Wp: int, Wt: int, depth: int, dtype):
    """``rows (m+2, m*Wt+2, D)``, whose columns past the input's width stay zero (tiles past the right edge),
    and ``zero_row (Wp, D)``, which stands in for rows past the bottom edge."""
    return np.zeros((t.span, t.tile * Wt + 2, depth), dtype), np.zeros((Wp, depth), dtype)


def _tile_blocks(t: Tiling, start: int, stop: int, images_per_block: int, tiles_per_image: int, depth: int,
                 filters: int, dtype) -> list:
    """``[(first image, V (points, tiles, D), M (points, tiles, K))]`` for each block of images ``start..stop-1``.

    V and M are views of two buffers allocated here for the largest block,
    so each block's must be used before the next one's.
    """
    images_per_block = max(1, min(images_per_block, stop - start))
    V_buffer = np.empty(t.points * images_per_block * tiles_per_image * depth, dtype)
    M_buffer = np.empty(t.points * images_per_block * tiles_per_image * filters, dtype)
    blocks = []
    for first in range(start, stop, images_per_block):
        n = min(images_per_block, stop - first) * tiles_per_image
        blocks.append((first, V_buffer[: t.points * n * depth].reshape(t.points, n, depth),
                       M_buffer[: t.points * n * filters].reshape(t.points, n, filters)))
    return blocks
