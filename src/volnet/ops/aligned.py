"""Arrays placed on cache-line boundaries, for the kernels that read weights a vector of filters at a time
(:mod:`volnet.ops.direct`), and the layers that create weights placed so."""

from __future__ import annotations

import math

import numpy as np

# The forward reads its weights a vector of filters at a time: on a cache-line boundary, a line each. Weights
# NumPy placed 16 bytes off one ran LeNet's second CONV at 134 GFLOP/s, aligned at 153 (the Intel Xeon).
ALIGNMENT = 64
# The largest weights aligned so (the direct kernels' are smaller). BLAS read a larger matrix slower on a cache
# line than where malloc puts it, 16 bytes into a page: a batch-1 multiply (16 x 4608) @ (4608 x 512), 9.4 MB,
# took 650 us at that offset and 710-870 at offsets 0, 64 and 1792 (ResNet-18's 4x4x512 blocks at batch 1:
# 2.5 -> 3.0 ms with every weight aligned).
ALIGNED_MAX_BYTES = 2**21


def zeros(shape, dtype) -> np.ndarray:
    """Zeros of ``shape`` whose first byte is :data:`ALIGNMENT`-aligned (NumPy aligns to 16 bytes)."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = np.zeros(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def copy(array: np.ndarray) -> np.ndarray:
    """``array`` where :func:`volnet.ops.direct.correlate` reads weights in place: up to
    :data:`ALIGNED_MAX_BYTES`, a C-contiguous copy starting on an :data:`ALIGNMENT` boundary (layers create
    their weights so; LeNet's batch-1 forward makes two weight copies fewer); larger arrays, which only BLAS
    reads, as they are."""
    if array.nbytes > ALIGNED_MAX_BYTES:
        return array
    placed = zeros(array.shape, array.dtype)
    placed[...] = array
    return placed


def read_in_order(array: np.ndarray) -> None:
    """Read ``array`` from start to end, a value a cache line (a strided sum): where a kernel then walks it in
    another order (down columns of weights, a line from each row), the lines come from memory as the hardware's
    prefetcher streams them rather than one miss at a time. In ResNet-18's pass at batch 1 (the Intel Xeon) the
    direct forward's 3x3 32x32x64->64 took 323 -> 278-306 us, 16x16x128->128 320-326 -> 288-314."""
    array.reshape(-1)[::ALIGNMENT // array.itemsize].sum()
