"""The compiled tile transforms of Winograd's 3x3 algorithms, F(2x2, 3x3) and F(4x4, 3x3).

:mod:`volnet.ops.winograd` drives them (which tile, blocks, multiplies,
threads); here are each algorithm's matrices and its three transforms:
the input's tiles (``V = B^T d B``), the products back to outputs
(``Y = A^T M A``, with the bias and the ReLU) and dout's tiles for the weight
gradient (``dM = A dY A^T``). The kernels write the matrices out as sums of
whole depth columns times small integers; ``tests/ops/test_winograd.py``
holds the matrices to Winograd's identity and the kernels to the naive
convolution.

The kernels loop over the depth innermost, one output array per loop, so that
LLVM vectorises every loop (more arrays per loop exceed its alias-check budget
and it falls back to scalar code, several times slower). Scratch rows come in
from NumPy: large allocations inside compiled code are slow on these machines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .jit import compiled


@dataclass(frozen=True)
class Tiling:
    """One Winograd algorithm F(m x m, 3x3): its tile sizes, matrices and compiled transforms.

    ``tile`` (m) outputs along each side of a tile come from ``span`` = m + 2
    inputs; ``points`` = span^2 transformed values per tile, hence that many
    multiplies per block. ``G`` transforms the filters, ``U = G g G^T``
    (:func:`volnet.ops.two_sided.two_sided`).
    """

    tile: int
    G: np.ndarray
    B_T: np.ndarray
    A_T: np.ndarray
    input_transform: object
    output_transform: object
    output_transform_backward: object

    @property
    def span(self) -> int:
        return self.tile + 2

    @property
    def points(self) -> int:
        return self.span * self.span


# -- F(2x2, 3x3) ------------------------------------------------------------------------------------------

@compiled
def input_transform_2(xp, first, V, Ht, Wt, rows, zero_row):  # pragma: no cover - compiled; tested via correlate
    """``V[4i+j, tile, :] = (B^T d B)[i, j]`` for every 4x4 tile d of images ``first, first+1, ...``.

    ``rows (4, 2*Wt+2, D)`` holds ``B^T d`` for one row of tiles (its columns past the input stay zero: the tile
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
def output_transform_2(M, bias, floor, out, first, Ht, Wt, columns):  # pragma: no cover - compiled
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
def output_transform_backward_2(dout, first, dM, Ht, Wt, dout_rows, zero_dout):  # pragma: no cover - compiled
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


# -- F(4x4, 3x3) ------------------------------------------------------------------------------------------

@compiled
def input_transform_4(xp, first, V, Ht, Wt, rows, zero_row):  # pragma: no cover - compiled; tested via correlate
    """``V[6i+j, tile, :] = (B^T d B)[i, j]`` for every 6x6 tile d of images ``first, first+1, ...``.

    ``rows (6, 4*Wt+2, D)`` holds ``B^T d`` for one row of tiles (its columns past the input stay zero);
    ``zero_row (Wp, D)`` stands in for the rows past the input's bottom edge.
    """
    Hp, Wp, D = xp.shape[1], xp.shape[2], xp.shape[3]
    images = V.shape[1] // (Ht * Wt)
    for m in range(images):
        image = xp[first + m]
        for ty in range(Ht):
            y = 4 * ty
            x0, x1, x2 = image[y], image[y + 1], image[y + 2]  # inside: y <= H2 - 1 = Hp - 3
            x3 = image[y + 3] if y + 3 < Hp else zero_row
            x4 = image[y + 4] if y + 4 < Hp else zero_row
            x5 = image[y + 5] if y + 5 < Hp else zero_row
            for q in range(Wp):  # B^T down the columns
                for c in range(D):
                    rows[0, q, c] = 4 * x0[q, c] - 5 * x2[q, c] + x4[q, c]
                for c in range(D):
                    rows[1, q, c] = x3[q, c] + x4[q, c] - 4 * (x1[q, c] + x2[q, c])
                for c in range(D):
                    rows[2, q, c] = 4 * (x1[q, c] - x2[q, c]) - x3[q, c] + x4[q, c]
                for c in range(D):
                    rows[3, q, c] = 2 * (x3[q, c] - x1[q, c]) - x2[q, c] + x4[q, c]
                for c in range(D):
                    rows[4, q, c] = 2 * (x1[q, c] - x3[q, c]) - x2[q, c] + x4[q, c]
                for c in range(D):
                    rows[5, q, c] = 4 * x1[q, c] - 5 * x3[q, c] + x5[q, c]
            t0 = (m * Ht + ty) * Wt
            for i in range(6):  # ... and along each row: B
                r = rows[i]
                for tx in range(Wt):
                    q, t = 4 * tx, t0 + tx
                    for c in range(D):
                        V[6 * i, t, c] = 4 * r[q, c] - 5 * r[q + 2, c] + r[q + 4, c]
                    for c in range(D):
                        V[6 * i + 1, t, c] = r[q + 3, c] + r[q + 4, c] - 4 * (r[q + 1, c] + r[q + 2, c])
                    for c in range(D):
                        V[6 * i + 2, t, c] = 4 * (r[q + 1, c] - r[q + 2, c]) - r[q + 3, c] + r[q + 4, c]
                    for c in range(D):
                        V[6 * i + 3, t, c] = 2 * (r[q + 3, c] - r[q + 1, c]) - r[q + 2, c] + r[q + 4, c]
                    for c in range(D):
                        V[6 * i + 4, t, c] = 2 * (r[q + 1, c] - r[q + 3, c]) - r[q + 2, c] + r[q + 4, c]
                    for c in range(D):
                        V[6 * i + 5, t, c] = 4 * r[q + 1, c] - 5 * r[q + 3, c] + r[q + 5, c]


@compiled
def output_transform_4(M, bias, floor, out, first, Ht, Wt, columns):  # pragma: no cover - compiled
    """``out[4ty+p, 4tx+q] = max((A^T M A)[p, q] + bias, floor)`` for every tile, cut at the output's edge.

    ``columns (4, 6, Wt, K)`` holds ``A^T M`` for one row of tiles.
    """
    Ho, Wo, K = out.shape[1], out.shape[2], out.shape[3]
    images = M.shape[1] // (Ht * Wt)
    for m in range(images):
        image = out[first + m]
        for ty in range(Ht):
            t0 = (m * Ht + ty) * Wt
            for j in range(6):  # A^T down the columns
                for tx in range(Wt):
                    t = t0 + tx
                    for k in range(K):
                        columns[0, j, tx, k] = (M[j, t, k] + M[6 + j, t, k] + M[12 + j, t, k]
                                                + M[18 + j, t, k] + M[24 + j, t, k])
                    for k in range(K):
                        columns[1, j, tx, k] = M[6 + j, t, k] - M[12 + j, t, k] + 2 * (M[18 + j, t, k] - M[24 + j, t, k])
                    for k in range(K):
                        columns[2, j, tx, k] = M[6 + j, t, k] + M[12 + j, t, k] + 4 * (M[18 + j, t, k] + M[24 + j, t, k])
                    for k in range(K):
                        columns[3, j, tx, k] = (M[6 + j, t, k] - M[12 + j, t, k] + 8 * (M[18 + j, t, k] - M[24 + j, t, k])
                                                + M[30 + j, t, k])
            for p in range(4):  # ... and along each row: A
                y = 4 * ty + p
                if y >= Ho:
                    break
                s = columns[p]
                for tx in range(Wt):
                    q = 4 * tx
                    for k in range(K):
                        image[y, q, k] = max(s[0, tx, k] + s[1, tx, k] + s[2, tx, k] + s[3, tx, k] + s[4, tx, k]
                                             + bias[k], floor)
                    if q + 1 < Wo:
                        for k in range(K):
                            image[y, q + 1, k] = max(s[1, tx, k] - s[2, tx, k] + 2 * (s[3, tx, k] - s[4, tx, k])
                                                     + bias[k], floor)
                    if q + 2 < Wo:
                        for k in range(K):
                            image[y, q + 2, k] = max(s[1, tx, k] + s[2, tx, k] + 4 * (s[3, tx, k] + s[4, tx, k])
                                                     + bias[k], floor)
                    if q + 3 < Wo:
                        for k in range(K):
                            image[y, q + 3, k] = max(s[1, tx, k] - s[2, tx, k] + 8 * (s[3, tx, k] - s[4, tx, k])
                                                     + s[5, tx, k] + bias[k], floor)


@compiled
def output_transform_backward_4(dout, first, dM, Ht, Wt, dout_rows, zero_dout):  # pragma: no cover - compiled
    """``dM[6i+j, tile, :] = (A dY A^T)[i, j]`` for every 4x4 tile dY of dout (zeros past its edge).

    ``dout_rows (6, 4*Wt, K)`` holds ``A dY`` for one row of tiles (its columns past dout's width stay
    zero); ``zero_dout (W2, K)`` stands in for the rows past dout's bottom edge.
    """
    Ho, Wo, K = dout.shape[1], dout.shape[2], dout.shape[3]
    images = dM.shape[1] // (Ht * Wt)
    for m in range(images):
        image = dout[first + m]
        for ty in range(Ht):
            y = 4 * ty
            d0 = image[y]
            d1 = image[y + 1] if y + 1 < Ho else zero_dout
            d2 = image[y + 2] if y + 2 < Ho else zero_dout
            d3 = image[y + 3] if y + 3 < Ho else zero_dout
            for q in range(Wo):  # A down the columns
                for k in range(K):
                    dout_rows[0, q, k] = d0[q, k]
                for k in range(K):
                    dout_rows[1, q, k] = d0[q, k] + d1[q, k] + d2[q, k] + d3[q, k]
                for k in range(K):
                    dout_rows[2, q, k] = d0[q, k] - d1[q, k] + d2[q, k] - d3[q, k]
                for k in range(K):
                    dout_rows[3, q, k] = d0[q, k] + 2 * d1[q, k] + 4 * d2[q, k] + 8 * d3[q, k]
                for k in range(K):
                    dout_rows[4, q, k] = d0[q, k] - 2 * d1[q, k] + 4 * d2[q, k] - 8 * d3[q, k]
                for k in range(K):
                    dout_rows[5, q, k] = d3[q, k]
            t0 = (m * Ht + ty) * Wt
            for i in range(6):  # ... and along each row: A^T
                r = dout_rows[i]
                for tx in range(Wt):
                    q, t = 4 * tx, t0 + tx
                    for k in range(K):
                        dM[6 * i, t, k] = r[q, k]
                    for k in range(K):
                        dM[6 * i + 1, t, k] = r[q, k] + r[q + 1, k] + r[q + 2, k] + r[q + 3, k]
                    for k in range(K):
                        dM[6 * i + 2, t, k] = r[q, k] - r[q + 1, k] + r[q + 2, k] - r[q + 3, k]
                    for k in range(K):
                        dM[6 * i + 3, t, k] = r[q, k] + 2 * r[q + 1, k] + 4 * r[q + 2, k] + 8 * r[q + 3, k]
                    for k in range(K):
                        dM[6 * i + 4, t, k] = r[q, k] - 2 * r[q + 1, k] + 4 * r[q + 2, k] - 8 * r[q + 3, k]
                    for k in range(K):
                        dM[6 * i + 5, t, k] = r[q + 3, k]


F2 = Tiling(tile=2, G=np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]),
            B_T=np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float),
            A_T=np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float),
            input_transform=input_transform_2, output_transform=output_transform_2,
            output_transform_backward=output_transform_backward_2)
# Interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray's).
F4 = Tiling(tile=4, G=np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                                [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
            B_T=np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                          [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float),
            A_T=np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                         dtype=float),
            input_transform=input_transform_4, output_transform=output_transform_4,
            output_transform_backward=output_transform_backward_4)
