"""volnet's kernels in the assignment's layout: what a learner's function should return.

The assignment's arrays are NCHW: x ``(N, C, H, W)``, conv weights
``(F, C, HH, WW)``; volnet's kernels (:mod:`volnet.ops`) take NHWC and
``(HH, WW, C, F)``. Each function here transposes in, calls the kernel and
transposes back, and returns every quantity of the layer at once (``out``
and, given ``dout``, ``dx``, ``dw``, ``db``) as a dict keyed by the names the
report uses.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..gradcheck import numerical_gradient


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def conv(x, w, b, stride, pad, dout=None) -> dict:
    """CONV: ``out (N, F, H', W')`` with ``H' = 1 + (H + 2*pad - HH) / stride``; with dout also dx, dw, db."""
    out, cache = ops.conv_forward(_nhwc(x), np.ascontiguousarray(w.transpose(2, 3, 1, 0)), b, stride=stride, pad=pad)
    result = {"out": _nchw(out)}
    if dout is not None:
        dx, dw, db = ops.conv_backward(_nhwc(dout), cache)
        result.update(dx=_nchw(dx), dw=np.ascontiguousarray(dw.transpose(3, 2, 0, 1)), db=db)
    return result


def max_pool(x, pool_height, pool_width, stride, dout=None) -> dict:
    """Max pooling: ``out (N, C, H', W')`` with ``H' = 1 + (H - pool_height) / stride``; with dout also dx."""
    out, cache = ops.pool_forward(_nhwc(x), (pool_height, pool_width), stride, "max")
    result = {"out": _nchw(out)}
    if dout is not None:
        result["dx"] = _nchw(ops.pool_backward(_nhwc(dout), cache))
    return result


def affine(x, w, b, dout=None) -> dict:
    """FC on x ``(N, d_1, ..., d_k)`` flattened per image: ``out (N, M)``; with dout also dx, dw, db."""
    out, cache = ops.fc_forward(x, w, b)
    result = {"out": out}
    if dout is not None:
        result.update(zip(("dx", "dw", "db"), ops.fc_backward(dout, cache)))
    return result


def relu(x, dout=None) -> dict:
    """ReLU: ``out = max(0, x)``; with dout also dx."""
    out, cache = ops.relu_forward(x)
    result = {"out": out}
    if dout is not None:
        result["dx"] = ops.relu_backward(dout, cache)
    return result


def softmax_loss(x, y) -> dict:
    """Softmax cross-entropy of scores x ``(N, C)``: the mean loss and dx."""
    return dict(zip(("loss", "dx"), ops.softmax_cross_entropy(x, y)))


def svm_loss(x, y) -> dict:
    """Multiclass SVM (margin 1) of scores x ``(N, C)``: the mean loss and dx."""
    return dict(zip(("loss", "dx"), ops.svm_hinge(x, y)))


def numerical(forward, inputs: dict, name: str, dout=None) -> np.ndarray:
    """Float64 centred differences of ``sum(forward(**inputs)["out"] * dout)`` (or of the loss) w.r.t. inputs[name]."""
    inputs = {key: value.astype(np.float64) if key != "y" else value for key, value in inputs.items()}

    def scalar():
        result = forward(**inputs)
        return float(result["loss"]) if dout is None else float(np.sum(result["out"] * dout))

    return numerical_gradient(scalar, inputs[name])
