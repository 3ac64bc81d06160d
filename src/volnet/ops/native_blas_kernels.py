"""The compiled kernels of :mod:`volnet.ops.native_blas`, and the intrinsics that call BLAS by address.

This module imports Numba; :mod:`volnet.ops.native_blas` imports it at its first kernel call. Everything the
kernels call is a module-level global here (not a closure variable), so that Numba's disk cache keeps them:
a kernel closing over its helpers was compiled again in every process (2 s before AlexNet's first batch-1
forward).
"""

from __future__ import annotations

import functools

import numba
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from . import tiled

tiled.numba_helpers()
at_least = tiled.at_least


def _caller(bits: int, gemv: bool):
    """An intrinsic calling the cblas_?gemm (row-major ``C (M x N) = A (M x K) @ B (K x N)``, ``lda``, ``ldb``,
    ``ldc`` the rows' strides in elements) or, ``gemv``, the cblas_?gemv (``y (N) = A.T @ x`` for ``A (M x N)``
    of rows ``lda`` apart: arguments ``M, N, A, lda, x, y``) at a given address, whose integers have ``bits``
    bits. The precision is the arrays'."""
    arrays_at = (3, 5, 6) if gemv else (4, 6, 8)

    def codegen(context, builder, signature, args):
        arrays = {i: context.make_array(signature.args[i])(context, builder, args[i]).data for i in arrays_at}
        real = context.get_value_type(signature.args[arrays_at[0]].dtype)
        integer, enum = ir.IntType(bits), ir.IntType(32)

        def count(value):
            return builder.trunc(value, integer) if bits < 64 else value

        one, zero = ir.Constant(real, 1.0), ir.Constant(real, 0.0)
        row_major, plain, transposed = (ir.Constant(enum, v) for v in (101, 111, 112))
        if gemv:
            M, N, _, lda = args[1:5]
            values = [row_major, transposed, count(M), count(N), one, arrays[3], count(lda), arrays[5],
                      ir.Constant(integer, 1), zero, arrays[6], ir.Constant(integer, 1)]
        else:
            M, N, K, _, lda, _, ldb, _, ldc = args[1:10]
            values = [row_major, plain, plain, count(M), count(N), count(K), one, arrays[4], count(lda),
                      arrays[6], count(ldb), zero, arrays[8], count(ldc)]
        function = ir.FunctionType(ir.VoidType(), [v.type for v in values])
        builder.call(builder.inttoptr(args[0], ir.PointerType(function)), values)
        return context.get_dummy_value()

    if gemv:
        @intrinsic
        def call(typingctx, address, M, N, A, lda, x, y):
            return types.void(address, M, N, A, lda, x, y), codegen
    else:
        @intrinsic
        def call(typingctx, address, M, N, K, A, lda, B, ldb, C, ldc):
            return types.void(address, M, N, K, A, lda, B, ldb, C, ldc), codegen
    return call


gemm64, gemm32, gemv64, gemv32 = _caller(64, False), _caller(32, False), _caller(64, True), _caller(32, True)
jit = functools.partial(numba.njit, nogil=True, cache=True, boundscheck=False, error_model="numpy")


@jit(inline="always")
def copy_fields(image, Wp, D, size, stride, dilation, Wo, i0, i1, rows, first):  # pragma: no cover - compiled
    """The receptive fields of output rows ``i0..i1-1`` of the flat padded ``image`` (Hp*Wp*D) into ``rows``
    from row ``first`` on, one output position a row."""
    (Fh, Fw), (Sh, Sw), (dh, dw) = size, stride, dilation
    run = Fw * D if dw == 1 else D  # values one copy moves: a filter row's, or one tap's
    for i in range(i0, i1):
        for j in range(Wo):
            row = first + (i - i0) * Wo + j
            for u in range(Fh):
                for v in range(0, Fw, run // D):
                    source = ((i * Sh + u * dh) * Wp + j * Sw + v * dw) * D
                    target = (u * Fw + v) * D
                    for e in range(run):
                        rows[row, target + e] = image[source + e]


@jit(inline="always")
def multiply_rows(gemm, wide, count, K, taps, rows, w_rows, k0, k1, block, bias, scale, floor):  # pragma: no cover
    """``block = at_least(rows @ w_rows[:, k0:k1] * scale[k0:k1] + bias[k0:k1], floor)`` for ``count`` rows."""
    if wide:
        gemm64(gemm, count, k1 - k0, taps, rows, taps, w_rows[:, k0:k1], K, block, K)
    else:
        gemm32(gemm, count, k1 - k0, taps, rows, taps, w_rows[:, k0:k1], K, block, K)
    for r in range(count):
        for k in range(k1 - k0):
            block[r, k] = at_least(block[r, k] * scale[k0 + k] + bias[k0 + k], floor)


@jit(parallel=True)
def correlate_kernel(gemm, wide, xp, Wp, D, size, stride, dilation, w_rows, bias, scale, floor, fields, out,
                     parts, by_filters):  # pragma: no cover - compiled
    # xp (N, Hp*Wp*D) each padded image flat; w_rows (taps, K); out (N, Ho*Wo, K). By rows: part p copies the
    # fields of its output rows into fields[p] and multiplies them by all the filters. By filters: the parts
    # first copy a share of the rows each into fields[0], then multiply all of them by a share of the filters.
    taps, K = w_rows.shape
    N, positions = out.shape[0], out.shape[1]
    Wo = (Wp - (size[1] - 1) * dilation[1] - 1) // stride[1] + 1
    Ho = positions // Wo
    for n in range(N):
        if by_filters:
            for p in numba.prange(parts):
                i0, i1 = p * Ho // parts, (p + 1) * Ho // parts
                copy_fields(xp[n], Wp, D, size, stride, dilation, Wo, i0, i1, fields[0], i0 * Wo)
            for p in numba.prange(parts):
                k0, k1 = p * K // parts, (p + 1) * K // parts
                multiply_rows(gemm, wide, positions, K, taps, fields[0], w_rows, k0, k1, out[n, :, k0:k1], bias,
                              scale, floor)
        else:
            for p in numba.prange(parts):
                i0, i1 = p * Ho // parts, (p + 1) * Ho // parts
                copy_fields(xp[n], Wp, D, size, stride, dilation, Wo, i0, i1, fields[p], 0)
                multiply_rows(gemm, wide, (i1 - i0) * Wo, K, taps, fields[p], w_rows, 0, K,
                              out[n, i0 * Wo: i1 * Wo, :], bias, scale, floor)


@jit(parallel=True)
def multiply_kernel(gemm, gemv, wide, a, w, bias, floor, partial, out):  # pragma: no cover - compiled
    # a (M, Kin), w (Kin, N); partial (parts, M, N): part p multiplies inputs k0..k1 (a GEMV for one row)
    M, Kin = a.shape
    N = w.shape[1]
    parts = partial.shape[0]
    for p in numba.prange(parts):
        k0, k1 = p * Kin // parts, (p + 1) * Kin // parts
        if M == 1 and wide:
            gemv64(gemv, k1 - k0, N, w[k0:k1], N, a[0, k0:k1], partial[p, 0])
        elif M == 1:
            gemv32(gemv, k1 - k0, N, w[k0:k1], N, a[0, k0:k1], partial[p, 0])
        elif wide:
            gemm64(gemm, M, N, k1 - k0, a[:, k0:k1], Kin, w[k0:k1], N, partial[p], N)
        else:
            gemm32(gemm, M, N, k1 - k0, a[:, k0:k1], Kin, w[k0:k1], N, partial[p], N)
    for m in range(M):
        for n in range(N):
            total = bias[n]
            for p in range(parts):
                total += partial[p, m, n]
            out[m, n] = at_least(total, floor)
