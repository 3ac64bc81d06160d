"""Winograd F(4x4, 5x5): the 5x5 stride-1 CONV with 6.25x fewer multiply-adds, its transforms as NumPy multiplies.

:mod:`volnet.ops.winograd` does 3x3 layers with F(4x4, 3x3) and F(2x2, 3x3),
their transforms written out and compiled with Numba. This module builds F(m x m, r x r) for
any sizes from the Toom-Cook construction (Lavin & Gray, 2015, section 4):
pick ``m + r - 2`` interpolation points plus the point at infinity, and the
three matrices follow from Lagrange interpolation:

* ``A^T`` (m x n), ``A^T[i, j] = p_j^i`` (last column: 1 in the last row),
* ``G`` (n x r), ``G[j, k] = p_j^k / prod_{l != j} (p_j - p_l)`` (last row: ``e_{r-1}``),
* ``B^T`` (n x n), row j the coefficients of ``prod_{l != j} (x - p_l)``
  (last row: of ``prod_l (x - p_l)``),

with ``n = m + r - 1``; then one output tile of m x m values is
``A^T [(G g G^T) * (B^T d B)] A`` for the n x n input tile d under it
(:func:`transforms` builds them exactly, with fractions, and the tests hold
them equal to direct correlation). Summed over the input depth, the n*n
elementwise products become n*n matrix multiplies ``V[a] @ U[a]``,
``(tiles, D) @ (D, K)``.

Here m = 4 and r = 5 (points 0, +-1, +-2, +-1/2): 64 multiplies for 16
outputs where im2col does 400. The transforms on both sides of a tile are
one multiply each by ``B^T (x) B^T`` (64 x 64) and ``A^T (x) A^T`` (16 x 64),
Kronecker products, so that BLAS does them on whole blocks of tiles, and
no compiler is needed (this module works without Numba). Its float32
results differ from direct correlation by about 1e-5 of their largest
value (the larger points round more), as cuDNN's and oneDNN's Winograd
do. F(2x2, 5x5) rounds a little less but ran slower on every 5x5 layer
of the zoo (docs/performance-log.md).

:mod:`volnet.ops.conv` uses it for 5x5 stride-1 undilated float layers
(:func:`applies`): their forward pass and their input gradient (a
correlation of dout with the flipped filters, again 5x5 stride 1), and
:func:`weight_gradient` (F(5x5, 4x4)) for dw.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import threads
from .dense import batch_sums
from .two_sided import two_sided
from .workspace import images_per_block as images_in_blocks_of, part_sizes, split_blocks

OUTPUT_TILE = 4  # m: each tile gives 4 x 4 output values
FILTER_SIZES = (5,)  # r: the filter sizes that take it (3x3 has volnet.ops.winograd's compiled transforms)
# The finite interpolation points, m + r - 2 of them used: small numbers, for float32 transforms that round little.
POINTS = (0, 1, -1, 2, -2, 0.5, -0.5)
# As in volnet.ops.winograd: shallower inputs give multiplies too thin for BLAS, and a batch with
# fewer output tiles than this cannot share the cost of transforming the filters (64 numbers per
# input channel and filter where im2col reads 25).
MIN_DEPTH = 8
MIN_TILES = 32
# Layers whose multiplies give results smaller than this (D*K numbers) run them too thin for BLAS to
# gain from doing fewer of them: below it im2col was faster in network passes, above it Winograd, more
# so the deeper the layer (the figures: docs/performance-log.md).
MIN_MULTIPLY = 16 * 32
# Each block of images holds at least this many tiles, so that its n*n multiplies have rows enough for
# BLAS: one 16x16 image (64 tiles) a block ran slower than two or more (docs/performance-log.md).
MIN_BLOCK_TILES = 128


@functools.lru_cache(maxsize=None)
def transforms(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T, G, B^T)`` of F(m, r) for correlation, float64, built exactly from :data:`POINTS` and infinity.

    >>> AT, G, BT = transforms(2, 3)
    >>> d, g = np.arange(4.0), np.array([1.0, 2.0, 3.0])
    >>> AT @ ((G @ g) * (BT @ d))  # the 1-D correlation of d with g, two outputs at once
    array([ 8., 14.])
    """
    n = m + r - 1
    if len(POINTS) < n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points; {len(POINTS)} are defined")
    p = [Fraction(x) for x in POINTS[: n - 1]]

    def product_except(j):  # coefficients of prod_{l != j} (x - p_l), lowest power first
        coefficients = [Fraction(1)]
        for l, point in enumerate(p):
            if l != j:
                coefficients = [shifted - point * same for same, shifted in zip(coefficients + [0], [0] + coefficients)]
        return coefficients

    AT = [[p[j] ** i for j in range(n - 1)] + [Fraction(i == m - 1)] for i in range(m)]
    scale = [np.prod([p[j] - p[l] for l in range(n - 1) if l != j]) for j in range(n - 1)]
    G = [[p[j] ** k / scale[j] for k in range(r)] for j in range(n - 1)] + [[Fraction(k == r - 1) for k in range(r)]]
    BT = [product_except(j) + [Fraction(0)] for j in range(n - 1)] + [product_except(None)]
    return tuple(np.array(matrix, dtype=float) for matrix in (AT, G, BT))


def applies(g, depth: int, filters: int, dtype) -> bool:
    """Whether the correlation with geometry ``g`` of ``depth`` input channels into ``filters`` takes
    :func:`correlate`: an r x r stride-1 undilated float layer (r in :data:`FILTER_SIZES`), at least
    :data:`MIN_DEPTH` deep, with multiplies of :data:`MIN_MULTIPLY` results or more and a batch of at
    least :data:`MIN_TILES` output tiles."""
    return (g.size[0] == g.size[1] and g.size[0] in FILTER_SIZES and g.stride == (1, 1) and g.dilation == (1, 1)
            and depth >= MIN_DEPTH and depth * filters >= MIN_MULTIPLY
            and np.dtype(dtype) in (np.float32, np.float64)
            and g.in_shape[0] * math.prod(tiles(g.out_hw)) >= MIN_TILES)


def tiles(out_hw) -> tuple[int, int]:
    """How many m x m output tiles cover an output of ``(H2, W2)``."""
    return -(-out_hw[0] // OUTPUT_TILE), -(-out_hw[1] // OUTPUT_TILE)


def bytes_per_image(out_hw, depth: int, filters: int, r: int, itemsize: int) -> int:
    """One image's share of a block: its input with zeros to whole tiles (where the output is :func:`ragged`),
    its tiles gathered (``n*n`` per tile and channel) and transformed (as many), their products (``n*n`` per
    tile and filter) and those transformed back (``m*m``)."""
    Ht, Wt = tiles(out_hw)
    n = OUTPUT_TILE + r - 1
    He, We = _padded_extent(out_hw, r)
    extended = He * We * depth if ragged(out_hw) else 0
    return (Ht * Wt * (2 * n * n * depth + (n * n + OUTPUT_TILE ** 2) * filters) + extended) * itemsize


def ragged(out_hw) -> bool:
    """Whether whole tiles stick out past the output, and so read past the padded input (zeros there)."""
    return out_hw[0] % OUTPUT_TILE != 0 or out_hw[1] % OUTPUT_TILE != 0


def _padded_extent(out_hw, r: int) -> tuple[int, int]:
    """The input rows and columns that whole tiles read: ``tiles * m + r - 1``."""
    Ht, Wt = tiles(out_hw)
    return Ht * OUTPUT_TILE + r - 1, Wt * OUTPUT_TILE + r - 1


def weight_gradient_bytes_per_image(out_hw, depth: int, filters: int, r: int, itemsize: int) -> int:
    """One image's share of a :func:`weight_gradient` block: its input tiles gathered and transformed,
    its dout's tiles gathered (``m*m`` per tile) and transformed (``n*n``), and where the output is
    :func:`ragged`, its input and dout with zeros to whole tiles."""
    Ht, Wt = tiles(out_hw)
    n, m = OUTPUT_TILE + r - 1, OUTPUT_TILE
    He, We = _padded_extent(out_hw, r)
    extended = He * We * depth + Ht * m * Wt * m * filters if ragged(out_hw) else 0
    return (Ht * Wt * (2 * n * n * depth + (m * m + n * n) * filters) + extended) * itemsize


def images_per_block(out_hw, depth: int, filters: int, r: int, images: int, itemsize: int, base_block_bytes: int,
                     weight_gradient: bool = False) -> int:
    """Images per block of :func:`correlate` (or :func:`weight_gradient`) on a batch of ``images``: about
    ``base_block_bytes`` (``volnet.ops.conv_rows.BLOCK_BYTES``) of :func:`bytes_per_image` each, at least
    :data:`MIN_BLOCK_TILES` tiles (:func:`block_bytes`)."""
    per_image = _bytes_per_image(out_hw, depth, filters, r, itemsize, weight_gradient)
    return images_in_blocks_of(images, per_image, block_bytes(out_hw, per_image, base_block_bytes))


def _bytes_per_image(out_hw, depth: int, filters: int, r: int, itemsize: int, weight_gradient: bool) -> int:
    """:func:`weight_gradient_bytes_per_image` or :func:`bytes_per_image`."""
    return (weight_gradient_bytes_per_image if weight_gradient else bytes_per_image)(
        out_hw, depth, filters, r, itemsize)


def block_bytes(out_hw, per_image: int, base: int) -> int:
    """The bytes of a block of images of ``per_image`` bytes each: ``base`` (``volnet.ops.conv_rows.BLOCK_BYTES``),
    or more where that holds fewer than :data:`MIN_BLOCK_TILES` tiles."""
    Ht, Wt = tiles(out_hw)
    return max(base, -(-MIN_BLOCK_TILES // (Ht * Wt)) * per_image)


def workspace(out_hw, depth: int, filters: int, r: int, images: int, itemsize: int, workers: int,
              base_block_bytes: int, weight_gradient: bool = False) -> int:
    """Bytes :func:`correlate` (or :func:`weight_gradient`) allocates beside its result: each of ``workers``
    threads' block buffers (:func:`bytes_per_image` times its images per block, :func:`block_bytes`) and the
    transformed filters U (or each thread's two sums of products, and db's column of ones)."""
    n = OUTPUT_TILE + r - 1
    per_image = _bytes_per_image(out_hw, depth, filters, r, itemsize, weight_gradient)
    blocks = split_blocks(images, per_image, block_bytes(out_hw, per_image, base_block_bytes), workers) * per_image
    sums = 2 * len(part_sizes(images, workers)) if weight_gradient else 1
    ones = images * out_hw[0] * out_hw[1] * itemsize if weight_gradient else 0  # db's (batch_sums)
    return blocks + sums * n * n * depth * filters * itemsize + ones


def _input_tiles(images: np.ndarray, extended, gathered, V, input_transform, tile_grid) -> np.ndarray:
    """``(n*n, tiles, D)``: the n x n input tiles of ``images`` (a block of the padded batch), gathered
    into ``gathered`` (through ``extended``, zeros past the images' edge, where it is given) and
    transformed by ``input_transform`` (``B^T (x) B^T``) into ``V``: views of the first rows of both."""
    count, H, W, D = images.shape
    (Ht, Wt), m = tile_grid, OUTPUT_TILE
    n = math.isqrt(len(input_transform))
    if extended is not None:
        extended[:count, :H, :W] = images
        images = extended[:count]
    size = count * Ht * Wt * D
    sN, sH, sW, sD = images.strides
    windows = as_strided(images, (n, n, count, Ht, Wt, D), (sH, sW, sN, m * sH, m * sW, sD))
    d = gathered[:, :size]
    np.copyto(d.reshape(n, n, count, Ht, Wt, D), windows)
    return np.matmul(input_transform, d, out=V[:, :size]).reshape(n * n, count * Ht * Wt, D)


def correlate(xp: np.ndarray, w: np.ndarray, bias=None, relu: bool = False, images_per_block: int = 1,
              workers: int = 1, *, blas_held: bool = False, fill=None) -> np.ndarray:
    """``(N, H2, W2, K)``: the correlation of a padded batch ``xp (N, H2+r-1, W2+r-1, D)`` with ``w (r, r, D, K)``.

    Adds ``bias (K,)`` and rectifies (``relu``) each block while it is in
    cache. ``workers`` threads take a part of the batch each
    (:func:`volnet.ops.threads.split`; ``blas_held``: within a network pass),
    ``images_per_block`` images at a time.
    ``fill``: where given, ``fill(start, stop)`` first writes those images of ``xp``
    (:func:`volnet.ops.window.pad_images`), in each part of the split.
    """
    dtype = np.result_type(xp, w)
    N, Hp, Wp, D = xp.shape
    r, K = w.shape[0], w.shape[3]
    m, n = OUTPUT_TILE, OUTPUT_TILE + r - 1
    Ho, Wo = Hp - r + 1, Wp - r + 1
    Ht, Wt = tiles((Ho, Wo))
    He, We = _padded_extent((Ho, Wo), r)
    AT, G, BT = (matrix.astype(dtype) for matrix in transforms(m, r))
    input_transform, output_transform = np.kron(BT, BT), np.kron(AT, AT)
    U = two_sided(G, w.astype(dtype, copy=False).reshape(r * r, D * K),
                  threads.Workers(workers, blas_held=blas_held)).reshape(n * n, D, K)  # (as winograd's)
    out = np.empty((N, Ho, Wo, K), dtype)

    def correlate_part(start, stop):
        step = min(images_per_block, stop - start)
        # the block's input with zeros past xp's edge, where whole tiles read beyond it
        extended = np.zeros((step, He, We, D), dtype) if ragged((Ho, Wo)) else None
        gathered = np.empty((n * n, step * Ht * Wt * D), dtype)
        V = np.empty_like(gathered)
        M = np.empty((n * n, step * Ht * Wt, K), dtype)
        Y = np.empty((m * m, step * Ht * Wt * K), dtype)
        yield  # allocated (see threads.split)
        if fill:
            fill(start, stop)
        for first in range(start, stop, step):
            count = min(step, stop - first)
            size = count * Ht * Wt
            tiles_in = _input_tiles(xp[first: first + count], extended, gathered, V, input_transform, (Ht, Wt))
            products = M[:, :size]
            np.matmul(tiles_in, U, out=products)
            y = Y[:, : size * K]
            np.matmul(output_transform, products.reshape(n * n, size * K), out=y)
            tiled = y.reshape(m, m, count, Ht, Wt, K).transpose(2, 3, 0, 4, 1, 5).reshape(count, Ht * m, Wt * m, K)
            block = out[first: first + count]
            if bias is None:
                np.copyto(block, tiled[:, :Ho, :Wo])
            else:
                np.add(tiled[:, :Ho, :Wo], bias, out=block)
            if relu:
                np.maximum(block, 0, out=block)

    threads.split(correlate_part, N, workers, blas_held=blas_held)
    return out


def weight_gradient(xp: np.ndarray, dout: np.ndarray, r: int, images_per_block: int = 1, workers: int = 1, *,
                    blas_held: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(dw (r, r, D, K), db (K,))`` of the correlation :func:`correlate` computes, from its input and ``dout``.

    ``dw[u, v] = sum over positions of xp[i+u, j+v] dout[i, j]``. Over one m x m tile of dout and
    the n x n input tile under it, that is the correlation of the input tile with the dout tile:
    F(r x r, m x m) (r outputs, an m-tap "filter"), whose tiles are as large (n = r + m - 1).
    Summed over tiles, its elementwise products become n*n multiplies ``V[a]^T @ M[a]``,
    ``(D, tiles) @ (tiles, K)``, then one output transform gives dw: 6.25x fewer multiply-adds
    than im2col's ``rows.T @ dout`` for 5x5. Each thread sums its part of the batch; the parts are added.
    """
    dtype = np.result_type(xp, dout)
    N, _, _, D = xp.shape
    _, Ho, Wo, K = dout.shape
    m, n = OUTPUT_TILE, OUTPUT_TILE + r - 1
    Ht, Wt = tiles((Ho, Wo))
    He, We = _padded_extent((Ho, Wo), r)
    AT, G, BT = (matrix.astype(dtype) for matrix in transforms(r, m))
    input_transform, dout_transform = np.kron(BT, BT), np.kron(G, G)

    def weight_gradient_part(start, stop):
        step = min(images_per_block, stop - start)
        # the block's input and dout with zeros past their edges, where whole tiles reach beyond them
        extended = np.zeros((step, He, We, D), dtype) if ragged((Ho, Wo)) else None
        dout_tiles = np.zeros((step, Ht * m, Wt * m, K), dtype) if ragged((Ho, Wo)) else None
        gathered = np.empty((n * n, step * Ht * Wt * D), dtype)
        V = np.empty_like(gathered)
        E = np.empty((m * m, step * Ht * Wt * K), dtype)
        M = np.empty((n * n, step * Ht * Wt, K), dtype)
        products = np.zeros((n * n, D, K), dtype)
        part = np.empty_like(products)
        yield  # allocated (see threads.split)
        for first in range(start, stop, step):
            count = min(step, stop - first)
            size = count * Ht * Wt
            tiles_in = _input_tiles(xp[first: first + count], extended, gathered, V, input_transform, (Ht, Wt))
            block = dout[first: first + count]
            if dout_tiles is not None:
                dout_tiles[:count, :Ho, :Wo] = block
                block = dout_tiles[:count]
            e = E[:, : size * K]
            np.copyto(e.reshape(m, m, count, Ht, Wt, K),
                      block.reshape(count, Ht, m, Wt, m, K).transpose(2, 4, 0, 1, 3, 5))
            np.matmul(dout_transform, e, out=M[:, :size].reshape(n * n, size * K))
            np.matmul(tiles_in.transpose(0, 2, 1), M[:, :size], out=part)
            products += part
        return products

    products, *others = threads.split(weight_gradient_part, N, workers, blas_held=blas_held)
    for other in others:
        products += other
    dw = two_sided(AT, products.reshape(n * n, D * K), threads.Workers(workers, blas_held=blas_held))
    return dw.reshape(r, r, D, K), batch_sums(np.asarray(dout, dtype=dtype), 3)
