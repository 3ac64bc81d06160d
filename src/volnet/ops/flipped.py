"""The input gradient's filters: a CONV's weights flipped in space and transposed, compiled and blocked.

The notes: the backward pass of a convolution "is also a convolution (but with spatially-flipped
filters)"; with depth and filters trading places, the weights ``w (F, F, D, K)`` become
``w[::-1, ::-1].transpose(0, 1, 3, 2)``, ``(F, F, K, D)``. NumPy's copy of that view reads w 4 bytes from
every row of K values and ran at 3.4 GB/s (ResNet's 3x3 512 -> 512 filters, 9.4 MB: 2.8 ms on one core,
while the rest of a network pass splits over every core); :func:`flipped_filters` copies blocks of
:data:`BLOCK` x :data:`BLOCK` values, each read and written whole cache lines at a time, and splits the
rows of D over the pass's threads.
"""

from __future__ import annotations

import numpy as np

from . import threads
from .jit import ENABLED, compiled

BLOCK = 16  # values per side of a block: a 64-byte cache line of float32 on each side of the transposition


def flipped_filters(w: np.ndarray, workers=threads.SERIAL) -> np.ndarray:
    """``w (F, F, D, K)`` flipped in space and transposed, C-contiguous: ``(F, F, K, D)``, equal to
    ``np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))``. ``workers`` (a
    :class:`~volnet.ops.threads.Workers`) split it by blocks of input channels, where each part holds
    ``threads.MIN_PART_BYTES``; without Numba NumPy copies the view."""
    if not ENABLED:
        return np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))
    Fh, Fw, D, K = w.shape
    source = np.ascontiguousarray(w)
    out = np.empty((Fh, Fw, K, D), dtype=w.dtype)
    blocks = -(-D // BLOCK)

    def flip_part(start, stop):
        yield  # nothing to allocate (see threads.split)
        _flip_transpose(source, out, start * BLOCK, min(D, stop * BLOCK))

    workers.split(flip_part, blocks, workers.for_bytes(2 * w.nbytes, blocks))
    return out


@compiled
def _flip_transpose(w, out, first, last):  # pragma: no cover - compiled
    # out[Fh-1-u, Fw-1-v, k, d] = w[u, v, d, k] for the input channels d in first..last-1, a block at a time
    Fh, Fw, _, K = w.shape
    for u in range(Fh):
        for v in range(Fw):
            for d0 in range(first, last, BLOCK):
                for k0 in range(0, K, BLOCK):
                    for d in range(d0, min(d0 + BLOCK, last)):
                        for k in range(k0, min(k0 + BLOCK, K)):
                            out[Fh - 1 - u, Fw - 1 - v, k, d] = w[u, v, d, k]
