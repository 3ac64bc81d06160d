"""One image's multiplies split over Numba's threads, each part calling NumPy's own BLAS from compiled code.

At batch 1 there are no images to share out, so a network pass splits each layer's
output instead (rows of a CONV's output, or the inputs of an FC) over threads started
from compiled code (:func:`volnet.ops.tiled.parallel_threads`: Numba's parallel kernels,
which need no GIL). BLAS is held to one thread for that pass, because two pools of
spinning threads on the same cores starve each other: on the 2-core Intel Xeon a 60-us
parallel CONV took 7 ms when it followed a GEMV on BLAS's two threads. The layers that
multiply through BLAS therefore call it from Numba's threads, one part each:

* :func:`correlate`: a CONV as im2col + GEMM, each thread copying the receptive fields of
  its rows of the output and multiplying them by the weights (or, for maps of few positions,
  the threads copying a share of the fields each, then multiplying all of them by a share of
  the filters each);
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

from . import jit, tiled

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
    if not cores or cores < 2 or not jit.ENABLED or functions() is None:
        return 1
    return tiled.parallel_threads(cores)


def _addresses(dtype) -> tuple[int, int, bool]:
    """``(gemm, gemv, wide)`` for values of ``dtype`` (float32 or float64)."""
    addresses, wide = functions()
    prefix = "s" if np.dtype(dtype) == np.float32 else "d"
    return addresses[prefix + "gemm"], addresses[prefix + "gemv"], wide


def correlate(xp: np.ndarray, g, w_rows: np.ndarray, bias, relu: bool, threads: int, scale=None) -> np.ndarray:
    """``(N*H2*W2, K)``: the receptive fields of the padded batch ``xp (N, Hp, Wp, D)`` as geometry ``g`` says
    (:func:`volnet.ops.window.im2row`) times ``w_rows (F*F*D, K)``, plus ``bias`` (None: none), rectified
    where ``relu``; each image's output split over ``threads`` of Numba's threads by rows, or by filters
    where the parts would hold fewer than :data:`MIN_PART_POSITIONS` positions; ``scale`` (K,), where given,
    multiplies each sum before the bias is added. BLAS must be on one thread (a network pass's)."""
    N, Hp, Wp, D = xp.shape
    (Ho, Wo), (Fh, Fw), K = g.out_hw, g.size, w_rows.shape[1]
    dtype = np.result_type(xp, w_rows)
    by_filters, buffers, rows = _fields(g.out_hw, threads)
    fields = np.empty((buffers, rows, Fh * Fw * D), dtype=dtype)
    out = np.empty((N, Ho * Wo, K), dtype=dtype)
    bias = np.zeros(K, dtype=dtype) if bias is None else np.asarray(bias, dtype=dtype)
    scale = np.ones(K, dtype=dtype) if scale is None else np.asarray(scale, dtype=dtype)
    gemm, _, wide = _addresses(dtype)
    flat = np.ascontiguousarray(xp, dtype=dtype).reshape(N, Hp * Wp * D)
    _kernels().correlate_kernel(gemm, wide, flat, Wp, D, g.size, g.stride, g.dilation,
                                np.ascontiguousarray(w_rows, dtype), bias, scale, _floor(dtype, relu), fields, out,
                                threads, by_filters)
    return out.reshape(N * Ho * Wo, K)


def correlate_scratch(out_hw, taps: int, threads: int, itemsize: int) -> int:
    """Bytes :func:`correlate` allocates beside its output: the receptive fields (each thread's, or one set
    that all share where it splits by filters)."""
    _, buffers, rows = _fields(out_hw, threads)
    return buffers * rows * taps * itemsize


def _fields(out_hw, threads: int) -> tuple[bool, int, int]:
    """``(by_filters, buffers, rows)``: whether :func:`correlate` splits by filters, and its buffers of
    receptive fields, each of ``rows`` output positions (one for all, or one per thread's rows)."""
    Ho, Wo = out_hw
    if Ho * Wo < MIN_PART_POSITIONS * threads:
        return True, 1, Ho * Wo
    return False, threads, -(-Ho // threads) * Wo


def multiply(a: np.ndarray, w: np.ndarray, bias, relu: bool, threads: int) -> np.ndarray:
    """``a (M, K) @ w (K, N) + bias``, rectified where ``relu``: each of ``threads`` of Numba's threads
    multiplies its share of the K inputs by those rows of ``w`` (a part of the weights each, read once),
    and the partial products are added. BLAS must be on one thread (a network pass's)."""
    M, N, dtype = a.shape[0], w.shape[1], np.result_type(a, w)
    partial = np.empty((max(1, min(threads, a.shape[1])), M, N), dtype=dtype)  # (no part without inputs)
    out = np.empty((M, N), dtype=dtype)
    bias = np.zeros(N, dtype=dtype) if bias is None else np.asarray(bias, dtype=dtype)
    gemm, gemv, wide = _addresses(dtype)
    _kernels().multiply_kernel(gemm, gemv, wide, np.ascontiguousarray(a, dtype=dtype),
                               np.ascontiguousarray(w, dtype=dtype), bias, _floor(dtype, relu), partial, out)
    return out


def _floor(dtype, relu: bool):
    return np.dtype(dtype).type(0 if relu else -np.inf)


def _kernels():
    """The compiled kernels (:mod:`volnet.ops.native_blas_kernels`, which imports Numba: imported at the first
    call, not with volnet)."""
    from . import native_blas_kernels

    return native_blas_kernels
