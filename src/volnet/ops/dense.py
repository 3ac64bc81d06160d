"""Fully connected (dense) layer and ReLU.

FC: every output neuron is connected to every input activation, so a batch
of volumes ``(N, H, W, D)`` is flattened to ``(N, H*W*D)`` and
``out = x_flat @ w + b`` with w ``(H*W*D, K)`` and b ``(K,)``; the output is
``(N, K)`` (the notes' ``1x1xK`` volume).

ReLU: ``max(0, x)`` elementwise; the shape is unchanged.
"""

from __future__ import annotations

import numpy as np

from ..shapes import ShapeError
from . import threads


def fc_forward(x, w, b, *, layer=None, relu=False):
    """Dense layer on a batch of volumes or vectors; returns ``(out, cache)``.

    ``relu=True`` rectifies the output in place (a following ReLU, fused).
    """
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] != w.shape[0]:
        raise ShapeError(
            f"{layer or 'fc'}: each input holds {flat.shape[1]} values (shape {x.shape[1:]}) but the "
            f"weights expect {w.shape[0]} inputs (weights {w.shape})"
        )
    out = _rows_times(flat, w)
    out += b
    if relu:
        np.maximum(out, 0, out=out)
    return out, (x, w)


def fc_backward(dout, cache, input_grad: bool = True):
    """Backward of :func:`fc_forward`: ``(dx, dw, db)``, dx in the input's shape (None if not ``input_grad``)."""
    x, w = cache
    flat = x.reshape(x.shape[0], -1)
    dx = _rows_times(dout, w.T).reshape(x.shape) if input_grad else None
    return dx, _rows_times(flat.T, dout), dout.sum(axis=0)


def _rows_times(a, b):
    """``a @ b``; within a network pass each core computes a part of the rows (:mod:`volnet.ops.threads`)."""
    workers = threads.pass_workers(a.shape[0] * a.shape[1] * b.shape[1], a.shape[0])
    if workers == 1:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))

    def rows_part(start, stop):
        yield  # nothing to allocate (see threads.split)
        np.matmul(a[start:stop], b, out=out[start:stop])

    threads.split(rows_part, a.shape[0], workers)
    return out


def relu_forward(x):
    """``max(0, x)``; the cache is the output, whose sign tells backward where to pass."""
    out = np.empty_like(x)

    def relu_part(start, stop):
        yield
        np.maximum(x[start:stop], 0, out=out[start:stop])

    threads.split(relu_part, len(x), threads.memory_workers(2 * x.nbytes, len(x)))
    return out, out


def relu_backward(dout, cache):
    """Gradient passes where the output was positive, and is zero elsewhere."""
    out = np.empty_like(dout)
    passes = np.empty(cache.shape, dtype=bool)

    def relu_part(start, stop):
        yield
        np.greater(cache[start:stop], 0, out=passes[start:stop])
        np.multiply(dout[start:stop], passes[start:stop], out=out[start:stop])

    threads.split(relu_part, len(out), threads.memory_workers(3 * out.nbytes, len(out)))
    return out
