"""Warming NumPy's BLAS once per process, so that the one-thread GEMMs of a split run at full speed.

OpenBLAS (0.3.31) runs a one-thread GEMM several times slower unless the work buffer it is given was
first used by a GEMM on more than one thread (the figures: docs/threads.md). It keeps one such buffer per
GEMM running at the same time: warmed by a single multiply, a lone one-thread GEMM ran fast, but of two
running side by side (the two parts of a split in a network pass) one ran slow and held up the layer;
warmed from two threads at once, both ran fast, and a third at once ran slow again. Unwarmed, it happens
in a network pass that is the process's first BLAS work, under ``OPENBLAS_NUM_THREADS=1`` and on one
core. The warm-up costs tens of milliseconds, once (:meth:`volnet.ops.threads.Scheduler.warm_blas`).
"""

from __future__ import annotations

import threading

# Each thread's multiplies, WARM_SIZE square (smaller ones run on one BLAS thread), so that the threads'
# multiplies overlap even where one thread starts late.
WARM_SIZE = 256
WARM_REPEATS = 2


def warm(blas, cores) -> None:
    """From each of ``cores()`` threads at once, :data:`WARM_REPEATS` multiplies on two (or more) BLAS
    threads; ``blas``: NumPy's BLAS libraries (a threadpoolctl selection), or False (one plain multiply)."""
    import numpy as np

    square = np.ones((WARM_SIZE, WARM_SIZE), dtype=np.float32)
    if not blas:
        np.matmul(square, square)
        return
    count = cores()
    together = threading.Barrier(count)

    def multiply():
        try:
            together.wait()  # all start at once, so that each takes a buffer of its own
        except threading.BrokenBarrierError:  # a thread could not start: warm what the others can
            pass
        for _ in range(WARM_REPEATS):
            np.matmul(square, square)

    limiter = blas.limit(limits=max(2, count))
    started = []
    try:
        try:
            for _ in range(count - 1):
                thread = threading.Thread(target=multiply, name="volnet-warm-blas", daemon=True)
                thread.start()
                started.append(thread)
        except BaseException:  # no more threads: release the ones waiting, then let the error through
            together.abort()
            raise
        multiply()
    finally:
        for thread in started:
            thread.join()
        limiter.restore_original_limits()
