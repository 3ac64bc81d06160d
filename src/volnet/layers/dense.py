"""FC, ReLU and Flatten layers."""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..ops.dense import (fc_backward_workspace, fc_workspace, relu_backward_workspace, relu_fused_workspace,
                         relu_workspace, split_image_threads)
from ..ops.pool import pool_plan
from ..ops.workspace import BackwardWorkspace, ForwardWorkspace, float_dtype
from .base import Costs, Keyword, Layer, Param, ParamArray, he_normal, zeros
from .paths import forward_group


def flatten_order(volume_shape) -> np.ndarray | None:
    """Where PyTorch's (C, H, W) flattening puts volnet's (H, W, D) features; None if the same.

    volnet stretches a volume depth-fastest, PyTorch's ``Flatten`` width-fastest:
    PyTorch feature ``i`` is volnet feature ``order[i]`` (see ``volnet.interop.torch_bridge``).
    """
    H, W, D = volume_shape
    if H * W == 1 or D == 1:
        return None
    return np.arange(H * W * D).reshape(H, W, D).transpose(2, 0, 1).ravel()


class FC(Layer):
    """Fully connected layer: every output neuron sees every input activation.

    Args:
        K: number of output neurons (class scores for the last layer).

    Input: any volume ``(H, W, D)`` (flattened to ``H*W*D`` values) or a
    vector ``(n,)``; output: the vector ``(K,)``, the notes' ``1x1xK`` volume.

    Parameters: weights ``(H*W*D, K)`` and K biases, He-normal and zero.

    Example:
        >>> from volnet import Sequential
        >>> net = Sequential([FC(10)], input_shape=(16, 16, 12))
        >>> net.output_shape, net.num_params   # 3072*10 + 10
        ((10,), 30730)
    """

    kind = "fc"
    weight = ParamArray()  # (fan_in, K)
    bias = ParamArray()    # (K,)
    keyword = Keyword("FC", ("K",), positional=1, compact="K")
    counted_in_notes = True
    sees_whole_input = True

    def __init__(self, K: int):
        super().__init__()
        self.K = int(K)
        if self.K < 1:
            raise ValueError(f"FC: K (number of neurons) must be >= 1, got {K}")

    def output_shape(self, input_shape):
        return (self.K,)

    def _init_params(self, input_shape, rng, dtype):
        fan_in = math.prod(input_shape)
        return [Param("weight", he_normal(rng, (fan_in, self.K), fan_in, dtype)),
                Param("bias", zeros(rng, self.K, dtype))]

    fuses_relu = True

    def forward(self, x, train=False, *, keep=None, workers=None, relu=False):
        """The layer's output; ``relu=True`` also applies a following ReLU (see ``forward_layers``)."""
        out, cache = ops.fc_forward(x, self.weight, self.bias, layer=self.label, relu=relu, workers=workers)
        self._keep(cache, train, keep)
        return out

    def inference_step(self, batch_shape, dtype, workers, norm=None, relu=None):
        """``x -> out`` on batches of ``batch_shape`` in inference, with the ReLU ``relu`` fused where given (see
        ``volnet.layers.inference``): the weights read at each call, the check and split worked out here."""
        shape = self.weight.shape
        step = ops.dense.forward_step(tuple(batch_shape), shape, relu is not None, workers, self.label)

        def multiply(x):
            w = self.weight
            if w.shape != shape:  # weights replaced: checked again
                return forward_group(self, None, relu, x, False, workers)
            return step(x, w, self.bias)

        return multiply

    def backward(self, dout, input_grad=True, *, workers=None):
        dx, dw, db = ops.fc_backward(dout, self._take_cache(), input_grad, workers=workers)
        self._params[0].grad, self._params[1].grad = dw, db
        return dx

    def get_config(self):
        return {"K": self.K}

    # -- the description of the kind ---------------------------------------------
    def costs(self, input_shape, output_shape):
        """``fan_in * K`` multiply-adds and weights, K biases and bias adds."""
        fan_in, K = math.prod(input_shape), output_shape[-1]
        return Costs(fan_in * K + K, fan_in * K, K, (fan_in * K, K))

    def forward_workspace(self, work):
        return fc_workspace(work.n_out, work.itemsize, split_image_threads(work.N, work.n_in * work.output_shape[-1],
                                                                            work.cores))

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
        return fc_backward_workspace(work.n_in, work.itemsize, grads=work.grads, input_grad=input_grad)

    def to_torch(self, bridge, order):
        """``Linear``, the weight ``(fan_in, K)`` transposed to ``(K, fan_in)``; reading a volume, a
        ``Flatten`` in front of it, and the weight's rows permuted to PyTorch's flattening order."""
        shape = self.input_shape
        linear = bridge.nn.Linear(math.prod(shape), self.K)
        if len(shape) == 3:
            return bridge.step(self, [bridge.nn.Flatten(), linear], holder=1, order=flatten_order(shape)), None
        return bridge.step(self, [linear], holder=0, order=order), None

    def torch_arrays(self, gather, scatter):
        return [("weight", "weight", lambda w: gather(w).T, lambda t: scatter(t.T)), ("bias", "bias", _same, _same)]

    def to_onnx(self, graph, x, input_shape):
        """``Gemm``; reading a volume, ``Flatten`` first (channels-first inside the graph, ``(D, H, W)``
        order) and the weight's rows permuted from volnet's depth-fastest order to it."""
        w, b = self.weight, self.bias
        if len(input_shape) == 3:
            order = flatten_order(input_shape)
            w = w if order is None else w[order]
            x = graph.op("Flatten", [x], "flatten", axis=1)
        return graph.op("Gemm", [x, graph.weight("weight", w), graph.weight("bias", b)], "gemm")


def _same(a):
    return a


class ReLU(Layer):
    """``max(0, x)`` elementwise; output shape = input shape, no parameters."""

    kind = "relu"
    keyword = Keyword("RELU")

    def output_shape(self, input_shape):
        return input_shape

    def forward(self, x, train=False, *, keep=None, workers=None):
        out, cache = ops.relu_forward(x, workers=workers)
        self._keep(cache, train, keep)
        return out

    def adopt_rectified(self, out, train=False, keep=None):
        """Take the output of a CONV or FC that already applied this ReLU (a fused pair), as forward would."""
        self._keep(out, train, keep)  # relu_forward's cache: the rectified output

    def backward(self, dout, input_grad=True, *, workers=None):
        return ops.relu_backward(dout, self._take_cache(), workers=workers)

    def take_rectified(self):
        """The output this ReLU kept for its backward pass, handed to the POOL above it, whose backward runs
        this one's (:func:`volnet.layers.paths.backward_layers`); the cache is dropped as backward drops it."""
        return self._take_cache()

    # -- the description of the kind ---------------------------------------------
    def costs(self, input_shape, output_shape):
        return Costs(0, 0, math.prod(output_shape))  # a max per value

    def forward_workspace(self, work, fused: bool = False):
        """``fused``: it follows a CONV or FC that rectified in place (:meth:`adopt_rectified`)."""
        return relu_fused_workspace() if fused else relu_workspace(work.n_out, work.itemsize)

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True, fused: bool = False):
        """``fused``: the max or average POOL above ran this backward (:meth:`take_rectified`): nothing of its
        own where that pool's gather is compiled (dx is the pool's), else what :func:`relu_backward` allocates."""
        if fused and pool_plan("max", float_dtype(work.itemsize)) == "compiled":
            return BackwardWorkspace(0, None)
        return relu_backward_workspace(work.n_in, work.itemsize)

    def to_torch(self, bridge, order):
        return bridge.step(self, [bridge.nn.ReLU()]), order

    def to_onnx(self, graph, x, input_shape):
        return graph.op("Relu", [x], "relu")


class Flatten(Layer):
    """Stretch each volume ``(H, W, D)`` into a vector ``(H*W*D,)``; no parameters."""

    kind = "flatten"
    keyword = Keyword("FLATTEN")

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, train=False, *, keep=None, workers=None):
        self._keep(x.shape, train, keep)
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, input_grad=True, *, workers=None):
        return dout.reshape(self._take_cache())

    # -- the description of the kind ---------------------------------------------
    def costs(self, input_shape, output_shape):
        return Costs()

    def forward_workspace(self, work):
        return ForwardWorkspace((), None)  # a reshape: a view of the input

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
        """dout.reshape: a view, or a copy of a strided dout."""
        if dout_contiguous:
            return BackwardWorkspace(0, None)
        return BackwardWorkspace(work.n_in * work.itemsize, work.n_in * work.itemsize)

    def to_torch(self, bridge, order):
        shape = self.input_shape
        return bridge.step(self, [bridge.nn.Flatten()]), flatten_order(shape) if len(shape) == 3 else order

    def to_onnx(self, graph, x, input_shape):
        """A volume: ``Transpose`` back to ``(N, H, W, D)`` then ``Flatten``, volnet's depth-fastest order."""
        if len(input_shape) != 3:
            return x
        return graph.op("Flatten", [graph.op("Transpose", [x], "to_hwd", perm=[0, 2, 3, 1])], "flatten", axis=1)
