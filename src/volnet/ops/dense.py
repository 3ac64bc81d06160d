"""Fully connected (dense) layer and ReLU.

FC: every output neuron is connected to every input activation, so a batch
of volumes ``(N, H, W, D)`` is flattened to ``(N, H*W*D)`` and
``out = x_flat @ w + b`` with w ``(H*W*D, K)`` and b ``(K,)``; the output is
``(N, K)`` (the notes' ``1x1xK`` volume).

ReLU: ``max(0, x)`` elementwise; the shape is unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from ..shapes import ShapeError
from . import native_blas, threads
from .threads import workers_for
from .memo import remembered
from .workspace import BackwardWorkspace, ForwardWorkspace


# One image in a forward pass (Workers.split_rows): an FC of at least this many multiply-adds splits its inputs
# over Numba's threads (volnet.ops.native_blas.multiply: cifar-ref's 4096 -> 512 at batch 1, 287 us on one BLAS
# thread, 165 on BLAS's two, 147 so; the Intel Xeon); smaller ones multiply on one thread (LeNet's 1568 -> 128,
# 200,704: 17 us so, 21 split).
SPLIT_IMAGE_MULTIPLY_ADDS = 2**18
# In a network pass (BLAS held to one thread) a matrix multiply splits over the cores in parts of at least this
# many multiply-adds, a quarter of threads.MIN_PART_MULTIPLY_ADDS: BLAS runs these at its full rate on one core
# while a split costs tens of us (LeNet's FC 1568 -> 128 at batch 64, 12.8 million, on the AMD EPYC Zen 4:
# forward 0.28 -> 0.19-0.24 ms on two threads, each of its two gradients likewise).
MIN_PART_MULTIPLY_ADDS = 2**22


def fc_forward(x, w, b, *, layer=None, relu=False, workers=None):
    """Dense layer on a batch of volumes or vectors; returns ``(out, cache)``.

    ``relu=True`` rectifies the output in place (a following ReLU, fused).
    ``workers`` (a :class:`volnet.ops.threads.Workers`; None:
    :func:`volnet.ops.threads.alone`) are the threads it may split the rows over.
    """
    return forward_step(x.shape, w.shape, relu, threads.or_alone(workers), layer)(x, w, b), (x, w)


@remembered
def forward_step(x_shape, w_shape, relu: bool, workers, layer=None):
    """:func:`fc_forward` on batches of ``x_shape`` under ``workers``, as a function ``(x, w, b) -> out`` of the
    arrays alone (the check and the split worked out once per layer and shape)."""
    N, fan_in = x_shape[0], math.prod(x_shape[1:])
    if fan_in != w_shape[0]:
        raise ShapeError(
            f"{layer or 'fc'}: each input holds {fan_in} values (shape {tuple(x_shape[1:])}) but the "
            f"weights expect {w_shape[0]} inputs (weights {tuple(w_shape)})"
        )
    if workers.split_rows and N * fan_in * w_shape[1] >= SPLIT_IMAGE_MULTIPLY_ADDS:  # Numba's threads, bias, ReLU
        rows = workers.rows()
        return lambda x, w, b: native_blas.multiply(x.reshape(N, fan_in), w, b, relu, rows)

    def step(x, w, b):
        out = split_matmul(x.reshape(N, fan_in), w, workers)
        out += b
        if relu:
            np.maximum(out, 0, out=out)
        return out

    return step


def fc_backward(dout, cache, input_grad: bool = True, *, workers=None):
    """Backward of :func:`fc_forward`: ``(dx, dw, db)``, dx in the input's shape (None if not ``input_grad``)."""
    workers = threads.or_alone(workers)
    x, w = cache
    flat = x.reshape(x.shape[0], -1)
    dx = split_matmul(dout, w.T, workers).reshape(x.shape) if input_grad else None
    return dx, split_matmul(flat.T, dout, workers), batch_sums(dout, 1)


def batch_sums(values: np.ndarray, axes: int) -> np.ndarray:
    """``values.sum`` over its first ``axes`` axes (a bias gradient: dout summed over the batch and positions),
    as a vector-matrix product in BLAS: NumPy sums across rows one row at a time, 4-10x slower (LeNet's
    second CONV's db on the Intel Xeon: 220 against 23 us)."""
    count = math.prod(values.shape[:axes])
    return (np.ones(count, dtype=values.dtype) @ values.reshape(count, -1)).reshape(values.shape[axes:])


def split_matmul(a, b, workers):
    """``a @ b``; within a network pass each core computes a part of the rows (:mod:`volnet.ops.threads`),
    or of the columns where b is the larger operand (a batch of 64 through an FC of 4096 -> 512: each core
    then reads half the weights, not all of them; 0.85x the time on the Intel Xeon; Winograd's filter
    transforms, a small matrix times the weights, likewise)."""
    by_columns = a.size < b.size
    parts = b.shape[1] if by_columns else a.shape[0]
    multiply_adds = a.shape[0] * a.shape[1] * b.shape[1]
    count = workers_for(multiply_adds, parts, workers.count(), MIN_PART_MULTIPLY_ADDS) if workers.blas_held else 1
    if count == 1:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))

    def rows_part(start, stop):
        yield  # nothing to allocate (see threads.split)
        np.matmul(a[start:stop], b, out=out[start:stop])

    def columns_part(start, stop):
        yield
        np.matmul(a, b[:, start:stop], out=out[:, start:stop])

    workers.split(columns_part if by_columns else rows_part, parts, count)
    return out


def relu_forward(x, *, workers=None):
    """``max(0, x)``; the cache is the output, whose sign tells backward where to pass.

    ``workers`` as in :func:`fc_forward` (parts of at least ``threads.MIN_PART_BYTES``).
    """
    workers = threads.or_alone(workers)
    out = np.empty_like(x)

    def relu_part(start, stop):
        yield
        np.maximum(x[start:stop], 0, out=out[start:stop])

    workers.split(relu_part, len(x), workers.for_bytes(2 * x.nbytes, len(x)))
    return out, out


def relu_backward(dout, cache, *, workers=None):
    """Gradient passes where the output was positive, and is zero elsewhere: ``dout * (out > 0)``
    (``workers`` as in :func:`relu_forward`). NumPy's two passes (a bool array, then the multiply) ran faster
    than one compiled pass on the Intel Xeon at every size measured (LeNet's 64 x 28x28x16: 445 against 468
    us on two threads), and a ReLU below a POOL runs inside the POOL's backward anyway
    (:func:`volnet.ops.pool.pool_backward`'s ``rectified``)."""
    workers = threads.or_alone(workers)
    out = np.empty_like(dout)
    passes = np.empty(cache.shape, dtype=bool)

    def relu_part(start, stop):
        yield
        np.greater(cache[start:stop], 0, out=passes[start:stop])
        np.multiply(dout[start:stop], passes[start:stop], out=out[start:stop])

    workers.split(relu_part, len(out), workers.for_bytes(3 * out.nbytes, len(out)))
    return out


# -- the memory these kernels allocate (see volnet.ops.workspace); n: values in the whole batch ------------

def fc_workspace(n_out: int, itemsize: int, split: int = 1) -> ForwardWorkspace:
    """:func:`fc_forward`: out = flat @ w (+ b in place, rectified in place with ``relu``); the cache keeps x.
    One image split over ``split`` threads (:func:`split_image_threads`): each thread's partial products."""
    return ForwardWorkspace((), n_out * itemsize, keeps_input=True, transient=(split * n_out * itemsize
                                                                                if split > 1 else 0))


def split_image_threads(images: int, multiply_adds: int, cores: int) -> int:
    """The threads :func:`fc_forward` splits one image's inputs over in a forward pass on ``cores``
    (:data:`SPLIT_IMAGE_MULTIPLY_ADDS`), 1 where it does not."""
    if images != 1 or multiply_adds < SPLIT_IMAGE_MULTIPLY_ADDS:
        return 1
    return native_blas.split_threads(cores)


def fc_backward_workspace(n_in: int, itemsize: int, *, grads: int = 0, input_grad: bool = True) -> BackwardWorkspace:
    """:func:`fc_backward`: dw = x.T @ dout and db (``grads`` bytes), dx = dout @ w.T (viewed in x's shape)."""
    return BackwardWorkspace(grads + (n_in * itemsize if input_grad else 0), n_in * itemsize)


def relu_workspace(n: int, itemsize: int) -> ForwardWorkspace:
    """:func:`relu_forward`: out = max(x, 0), kept as the cache."""
    return ForwardWorkspace((), n * itemsize, keeps_output=True)


def relu_fused_workspace() -> ForwardWorkspace:
    """A ReLU fused into the CONV or FC before it (``relu=True``, see ``volnet.layers.base.forward_layers``):
    that kernel rectifies its own output in place, which the ReLU keeps as its cache; nothing new."""
    return ForwardWorkspace((), None, keeps_output=True)


def relu_backward_workspace(n: int, itemsize: int) -> BackwardWorkspace:
    """:func:`relu_backward`: dout * (out > 0), a bool per value and dx."""
    return BackwardWorkspace(n + n * itemsize, n * itemsize)
