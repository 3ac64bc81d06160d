"""Winograd's filter transforms: a small matrix on both sides of each (input channel, filter)'s square of taps.

``U = G g G^T`` for every 3x3 (or 5x5) slice ``g`` of the filters, ``dw = G^T dU G`` back: with the taps as one
axis of ``x (I*I, columns)`` that is ``(G kron G) @ x``, as :func:`two_sided` computes it. BLAS does that product
at a fraction of its rate (its inner size is 9 or 25, and it packs every column first: ResNet's 3x3 512 -> 512
filters took 3.3 ms on one thread of the AMD EPYC Zen 4, the half of them each core of a network pass takes
1.8-3.2 ms); the compiled kernel multiplies the matrix on one side and then the other, 32 columns at a time
held on the stack, and reads the filters and writes the result once: 1.3 ms on one core, as fast as memory
goes (figures: docs/performance-log.md). Without Numba it is BLAS's product.
"""

from __future__ import annotations

import numpy as np

from . import threads, tiled
from .dense import split_matmul
from .jit import ENABLED

COLUMNS = 32  # columns a step takes (16 of them ran 4x slower: LLVM's full unroll of the step then spilled)


def two_sided(matrix: np.ndarray, x: np.ndarray, workers=threads.SERIAL) -> np.ndarray:
    """``(P*P, C)``: ``(matrix kron matrix) @ x`` for ``matrix (P, I)`` and ``x (I*I, C)``, that is, for each
    column c, ``matrix @ S @ matrix.T`` with S the column as an I x I matrix, row-major; in ``x``'s dtype, the
    columns split over ``workers`` (a :class:`~volnet.ops.threads.Workers`)."""
    P, I = matrix.shape
    if x.shape[0] != I * I:
        raise ValueError(f"two_sided: x has {x.shape[0]} rows, a {P}x{I} matrix on both sides needs {I * I}")
    matrix = np.ascontiguousarray(matrix, dtype=x.dtype)
    if not ENABLED:
        return split_matmul(np.kron(matrix, matrix), x, workers)
    x = np.ascontiguousarray(x)
    out = np.empty((P * P, x.shape[1]), x.dtype)
    steps = -(-x.shape[1] // COLUMNS)
    count = workers.for_bytes((x.size + out.size) * x.itemsize, steps)
    kernel = tiled.kernel(_two_sided_source, P, I, loop_vectorize=True)

    def calls(start, stop):
        return [(kernel, (x, matrix, out, start * COLUMNS, min(stop * COLUMNS, x.shape[1])))]

    threads.split_compiled(calls, steps, count, blas_held=workers.blas_held)
    return out


def _two_sided_source(P: int, I: int):
    """:func:`two_sided`'s kernel for a ``P x I`` matrix (closure constants: every loop over them unrolled)."""
    HALF, MATRIX = I * P * COLUMNS, P * I

    def two_sided(x, matrix, out, start, stop):  # pragma: no cover - compiled
        # half[i, q, c] = sum over j of matrix[q, j] x[i*I + j, c] (the right side), then out[p*P + q, c] = sum over
        # i of matrix[p, i] half[i, q, c]: (I + P) * I * P multiply-adds a column where the Kronecker product
        # takes P*P*I*I. Column indices unsigned (see volnet.ops.direct)
        m = tiled.carray(tiled.stack_array(MATRIX, x.dtype), MATRIX)  # the matrix, where no store can alias it
        for p in range(P):
            for i in range(I):
                m[p * I + i] = matrix[p, i]
        half = tiled.carray(tiled.stack_array(HALF, x.dtype), HALF)
        whole = start + (stop - start) // COLUMNS * COLUMNS
        for c0 in range(start, whole, COLUMNS):
            for i in range(I):
                for q in range(P):
                    for c in range(COLUMNS):
                        column = tiled.unsigned(c0 + c)
                        total = m[q * I] * x[i * I, column]
                        for j in range(1, I):
                            total += m[q * I + j] * x[i * I + j, column]
                        half[(i * P + q) * COLUMNS + c] = total
            for p in range(P):
                for q in range(P):
                    for c in range(COLUMNS):
                        total = m[p * I] * half[q * COLUMNS + c]
                        for i in range(1, I):
                            total += m[p * I + i] * half[(i * P + q) * COLUMNS + c]
                        out[p * P + q, tiled.unsigned(c0 + c)] = total
        # the last columns, under a step, one at a time: the steps' loops keep a constant count of columns (one
        # loop for both, over min(COLUMNS, columns left), ran F(2x2)'s 512 -> 512 filters 4x slower)
        for c in range(whole, stop):
            column = tiled.unsigned(c)
            for i in range(I):
                for q in range(P):
                    total = m[q * I] * x[i * I, column]
                    for j in range(1, I):
                        total += m[q * I + j] * x[i * I + j, column]
                    half[i * P + q] = total
            for p in range(P):
                for q in range(P):
                    total = m[p * I] * half[q]
                    for i in range(1, I):
                        total += m[p * I + i] * half[i * P + q]
                    out[p * P + q, column] = total

    return two_sided
