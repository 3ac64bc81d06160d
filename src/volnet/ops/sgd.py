"""Compiled update steps of :class:`volnet.optim.SGD` with momentum: one pass over each parameter.

NumPy's in-place expressions for ``v = momentum * v + g; w -= lr * v`` make four passes over the
arrays and allocate ``lr * v``; here each value of w, v and g is read once and w and v written once,
in torch's order of operations (the same rounding). Large arrays are split over the cores. Without
Numba, :mod:`volnet.optim.rules` keeps its NumPy expressions (:func:`applies`).
"""

from __future__ import annotations

import numpy as np

from . import jit, threads

# A part of a split update streams at least this many bytes (w, g and v read, w and v written). Unlike a
# layer's, an update's arrays lie in no core's cache by halves, and a split costs a few hundred microseconds
# outside a network pass (BLAS turned down and back): on the Intel Xeon (2 cores) a split lost up to
# 500,000 float32 values (9.5 MiB: 213 us alone, 229 split; 200,000: 58 against 213) and won from 1,000,000
# (424 against 350 us).
MIN_PART_BYTES = 2**23


def applies(w: np.ndarray, g: np.ndarray, v: np.ndarray) -> bool:
    """Whether :func:`momentum_step` takes these arrays: Numba on, one float dtype, all contiguous."""
    return (jit.ENABLED and w.dtype in (np.float32, np.float64) and g.dtype == w.dtype == v.dtype
            and all(a.flags.c_contiguous for a in (w, g, v)))


def momentum_step(w: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, momentum: float, nesterov: bool,
                  workers=None) -> None:
    """In place: ``v = momentum * v + g``, then ``w -= lr * v`` (or Nesterov's ``w -= lr * (g + momentum * v)``)."""
    flat_w, flat_g, flat_v = w.reshape(-1), g.reshape(-1), v.reshape(-1)
    workers = threads.or_alone(workers)
    scalars = (w.dtype.type(lr), w.dtype.type(momentum), nesterov)

    def part(start, stop):
        yield
        _momentum(flat_w, flat_g, flat_v, *scalars, start, stop)

    count = workers.for_bytes(5 * w.nbytes, flat_w.size, MIN_PART_BYTES)
    threads.split(part, flat_w.size, count, blas_held=workers.blas_held)


@jit.compiled
def _momentum(w, g, v, lr, momentum, nesterov, start, stop):  # pragma: no cover - compiled
    # Indexing slices from 0, not w[i] for i in range(start, stop): an index that might be negative gets
    # NumPy's wraparound test, which kept LLVM from vectorising the loop (200,000 float32: 178 -> 48 us).
    w, g, v = w[start:stop], g[start:stop], v[start:stop]
    if nesterov:
        for i in range(w.size):
            v[i] = momentum * v[i] + g[i]
            w[i] -= lr * (g[i] + momentum * v[i])
    else:
        for i in range(w.size):
            v[i] = momentum * v[i] + g[i]
            w[i] -= lr * v[i]
