"""One image's multiplies split over Numba's threads, each part calling NumPy's own BLAS from compiled code.

At batch 1 there are no images to share out, so a network pass splits each layer's
output instead (rows of a CONV's output, or the inputs of an FC) over threads started
from compiled code (:func:`volnet.ops.tiled.parallel_threads`: Numba's parallel kernels,
which need no GIL). BLAS is held to one thread for that pass, because two pools of
spinning threads on the same cores starve each other: on the 2-core Intel Xeon a 60-us
parallel CONV took 7 ms when it followed a GEMV on BLAS's two threads. The layers that
multiply through BLAS therefore call it from Numba's threads, one part each:

* :func:`correlate`: a CONV as im2col + GEMM, each thread copying the receptive fields of
  its rows of the output (or, for maps of few positions, all of them for its share of the
  filters) and multiplying them by the weights;
* :func:`multiply`: an FC, each thread multiplying its share of the inputs by those rows
  of the weights (each reads its part of the weights once: an FC at batch 1 is bound by
  memory), the partial results added at the end.

The calls go through the addresses of ``cblas_?gemm`` and ``cblas_?gemv`` in the BLAS library
NumPy loaded (found with threadpoolctl, resolved with ctypes: :func:`functions`); where
they cannot be found, :func:`split_threads` is 1 and batch 1 runs as before, on BLAS's threads.
"""

from __future__ import annotations

import functools

import numpy as np

# The names NumPy's BLAS builds give cblas_?gemm and cblas_?gemv (? = s, d), and whether their integers are
# 64-bit: NumPy's own wheels (scipy-openblas, ILP64), older OpenBLAS ILP64 builds, and the LP64 ones (conda's
# OpenBLAS, MKL).
NAMES = (("scipy_cblas_{}64_", True), ("cblas_{}64_", True), ("scipy_cblas_{}", False), ("cblas_{}", False))
FUNCTIONS = ("sgemm", "dgemm", "sgemv", "dgemv")
# Split a CONV's output by its filters, not its rows, where each part would get fewer output positions than
# this. Two parts on the Intel Xeon, by rows / by filters: 3x3 8x8x256->256 442 / 396 us, 8x8x192->384 441 /
# 401, 4x4x512->512 839 / 578, 3x3/2 8x8x256->512 407 / 286; 5x5 16x16x64->192 665 / 801.
MIN_PART_POSITIONS = 64


@functools.lru_cache(maxsize=1)
def functions() -> tuple[dict, bool] | None:
    """``(addresses, wide)``: the addresses of NumPy's BLAS's :data:`FUNCTIONS` (``cblas_sgemm``...) by name,
    and whether they take 64-bit integers; None where threadpoolctl or any of them cannot be found."""
    import ctypes

    try:
        import threadpoolctl
    except ImportError:
        return None
    for library in threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers:
        try:
            handle = ctypes.CDLL(library.filepath)
        except OSError:
            continue
        for name, wide in NAMES:
            try:
                found = {f: getattr(handle, name.format(f)) for f in FUNCTIONS}
            except AttributeError:
                continue
            return {f: ctypes.cast(c, ctypes.c_void_p).value for f, c in found.items()}, wide
    return None


def split_threads(cores: int | None) -> int:
    """Threads for splitting one image's output over ``cores`` cores on Numba's threads: ``cores`` where
    Numba runs (:data:`volnet.ops.jit.ENABLED`), its threading layer allows it
    (:func:`volnet.ops.tiled.parallel_threads`) and NumPy's BLAS can be called from those threads
    (:func:`functions`); else 1 (docs/threads.md)."""
    from . import jit, tiled

    if not cores or cores < 2 or not jit.ENABLED or functions() is None:
        return 1
    return tiled.parallel_threads(cores)


def _addresses(dtype) -> tuple[int, int, bool]:
    """``(gemm, gemv, wide)`` for values of ``dtype`` (float32 or float64)."""
    addresses, wide = functions()
    prefix = "s" if np.dtype(dtype) == np.float32 else "d"
    return addresses[prefix + "gemm"], addresses[prefix + "gemv"], wide


def correlate(xp: np.ndarray, g, w_rows: np.ndarray, bias, relu: bool, threads: int) -> np.ndarray:
    """``(N*H2*W2, K)``: the receptive fields of the padded batch ``xp (N, Hp, Wp, D)`` as geometry ``g`` says
    (:func:`volnet.ops.window.im2row`) times ``w_rows (F*F*D, K)``, plus ``bias`` (None: none), rectified
    where ``relu``; each image's output split over ``threads`` of Numba's threads by rows, or by filters
    where the parts would hold fewer than :data:`MIN_PART_POSITIONS` positions. BLAS must be on one thread
    (a network pass's)."""
    N, Hp, Wp, D = xp.shape
    (Ho, Wo), (Fh, Fw), K = g.out_hw, g.size, w_rows.shape[1]
    dtype = np.result_type(xp, w_rows)
    by_filters, rows = _parts(g.out_hw, threads)
    fields = np.empty((threads, rows, Fh * Fw * D), dtype=dtype)
    out = np.empty((N, Ho * Wo, K), dtype=dtype)
    bias = np.zeros(K, dtype=dtype) if bias is None else np.asarray(bias, dtype=dtype)
    gemm, _, wide = _addresses(dtype)
    flat = np.ascontiguousarray(xp, dtype=dtype).reshape(N, Hp * Wp * D)
    _kernels().correlate(gemm, wide, flat, Wp, D, g.size, g.stride, g.dilation, np.ascontiguousarray(w_rows, dtype),
                         bias, _floor(dtype, relu), fields, out, by_filters)
    return out.reshape(N * Ho * Wo, K)


def correlate_scratch(out_hw, taps: int, threads: int, itemsize: int) -> int:
    """Bytes :func:`correlate` allocates beside its output: each thread's receptive fields."""
    return threads * _parts(out_hw, threads)[1] * taps * itemsize


def _parts(out_hw, threads: int) -> tuple[bool, int]:
    """``(by_filters, rows)``: whether :func:`correlate` splits by filters, and the most output positions a
    thread's part holds."""
    Ho, Wo = out_hw
    by_filters = Ho * Wo < MIN_PART_POSITIONS * threads
    return by_filters, Ho * Wo if by_filters else -(-Ho // threads) * Wo


def multiply(a: np.ndarray, w: np.ndarray, bias, relu: bool, threads: int) -> np.ndarray:
    """``a (M, K) @ w (K, N) + bias``, rectified where ``relu``: each of ``threads`` of Numba's threads
    multiplies its share of the K inputs by those rows of ``w`` (a part of the weights each, read once),
    and the partial products are added. BLAS must be on one thread (a network pass's)."""
    M, N, dtype = a.shape[0], w.shape[1], np.result_type(a, w)
    partial = np.empty((max(1, min(threads, a.shape[1])), M, N), dtype=dtype)  # (no part without inputs)
    out = np.empty((M, N), dtype=dtype)
    bias = np.zeros(N, dtype=dtype) if bias is None else np.asarray(bias, dtype=dtype)
    gemm, gemv, wide = _addresses(dtype)
    _kernels().multiply(gemm, gemv, wide, np.ascontiguousarray(a, dtype=dtype), np.ascontiguousarray(w, dtype=dtype),
                        bias, _floor(dtype, relu), partial, out)
    return out


def _floor(dtype, relu: bool):
    return np.dtype(dtype).type(0 if relu else -np.inf)


@functools.lru_cache(maxsize=1)
def _kernels():
    """The compiled kernels (compiled once, cached on disk), and the intrinsics that call BLAS by address."""
    from types import SimpleNamespace

    import numba
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    from . import tiled

    tiled.numba_helpers()
    at_least = tiled.at_least

    def caller(bits: int, gemv: bool):
        """An intrinsic calling the cblas_?gemm (row-major ``C (M x N) = A (M x K) @ B (K x N)``, ``lda``,
        ``ldb``, ``ldc`` the rows' strides in elements) or, ``gemv``, the cblas_?gemv (``y (N) = A.T @ x``
        for ``A (M x N)`` of rows ``lda`` apart: arguments ``M, N, A, lda, x, y``) at a given address, whose
        integers have ``bits`` bits. The precision is the arrays'."""
        arrays_at = (3, 5, 6) if gemv else (4, 6, 8)

        def codegen(context, builder, signature, args):
            address, *rest = args
            arrays = {i: context.make_array(signature.args[i])(context, builder, args[i]).data for i in arrays_at}
            real = context.get_value_type(signature.args[arrays_at[0]].dtype)
            pointer, integer, enum = ir.PointerType(real), ir.IntType(bits), ir.IntType(32)

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
            builder.call(builder.inttoptr(address, ir.PointerType(function)), values)
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

    gemm64, gemm32, gemv64, gemv32 = caller(64, False), caller(32, False), caller(64, True), caller(32, True)
    jit = functools.partial(numba.njit, parallel=True, nogil=True, cache=True, boundscheck=False,
                            error_model="numpy")

    @jit
    def correlate_kernel(gemm, wide, xp, Wp, D, size, stride, dilation, w_rows, bias, floor, fields, out,
                         by_filters):  # pragma: no cover - compiled
        # xp (N, Hp*Wp*D) each padded image flat; w_rows (taps, K); fields (parts, rows, taps); out (N, Ho*Wo, K).
        # Part p: output rows i0..i1 and filters k0..k1 of each image (all the rows, or all the filters).
        (Fh, Fw), (Sh, Sw), (dh, dw) = size, stride, dilation
        N, Ho, Wo = out.shape[0], 0, 0
        taps, K = w_rows.shape
        positions = out.shape[1]
        Wo = (Wp - (Fw - 1) * dw - 1) // Sw + 1
        Ho = positions // Wo
        parts = fields.shape[0]
        run = Fw * D if dw == 1 else D  # values one copy moves: a filter row's, or one tap's
        for n in range(N):
            for p in numba.prange(parts):
                i0, i1, k0, k1 = (0, Ho, p * K // parts, (p + 1) * K // parts) if by_filters else (
                    p * Ho // parts, (p + 1) * Ho // parts, 0, K)
                rows = fields[p]
                for i in range(i0, i1):
                    for j in range(Wo):
                        row = (i - i0) * Wo + j
                        for u in range(Fh):
                            for v in range(0, Fw, run // D):
                                source = ((i * Sh + u * dh) * Wp + j * Sw + v * dw) * D
                                target = (u * Fw + v) * D
                                for e in range(run):
                                    rows[row, target + e] = xp[n, source + e]
                count, block = (i1 - i0) * Wo, out[n, i0 * Wo: i1 * Wo, k0:k1]
                if wide:
                    gemm64(gemm, count, k1 - k0, taps, rows, taps, w_rows[:, k0:k1], K, block, K)
                else:
                    gemm32(gemm, count, k1 - k0, taps, rows, taps, w_rows[:, k0:k1], K, block, K)
                for r in range(count):
                    for k in range(k1 - k0):
                        block[r, k] = at_least(block[r, k] + bias[k0 + k], floor)

    @jit
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

    return SimpleNamespace(correlate=correlate_kernel, multiply=multiply_kernel)
