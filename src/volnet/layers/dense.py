"""FC, ReLU and Flatten layers."""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .base import Layer, Param, he_normal


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
                Param("bias", np.zeros(self.K, dtype=dtype))]

    fuses_relu = True

    def forward(self, x, train=False, relu=False):
        """The layer's output; ``relu=True`` also applies a following ReLU (see ``forward_layers``)."""
        w, b = (p.value for p in self._params)
        out, cache = ops.fc_forward(x, w, b, layer=self.label, relu=relu)
        self._keep(cache, train)
        return out

    def backward(self, dout, input_grad=True):
        dx, dw, db = ops.fc_backward(dout, self._take_cache(), input_grad)
        self._params[0].grad, self._params[1].grad = dw, db
        return dx

    def get_config(self):
        return {"K": self.K}


class ReLU(Layer):
    """``max(0, x)`` elementwise; output shape = input shape, no parameters."""

    def output_shape(self, input_shape):
        return input_shape

    def forward(self, x, train=False):
        out, cache = ops.relu_forward(x)
        self._keep(cache, train)
        return out

    def adopt_rectified(self, out, train=False):
        """Take the output of a CONV or FC that already applied this ReLU (a fused pair), as forward would."""
        self._keep(out, train)  # relu_forward's cache: the rectified output

    def backward(self, dout, input_grad=True):
        return ops.relu_backward(dout, self._take_cache())


class Flatten(Layer):
    """Stretch each volume ``(H, W, D)`` into a vector ``(H*W*D,)``; no parameters."""

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, train=False):
        self._keep(x.shape, train)
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, input_grad=True):
        return dout.reshape(self._take_cache())
