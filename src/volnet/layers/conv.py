"""The CONV layer."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..ops.window import geometry
from ..shapes import pair
from .base import Layer, Param, he_normal, require_volume


class Conv2D(Layer):
    """Convolutional layer: K filters of F x F x D1 slid over the input with stride S.

    Args:
        K: number of filters, the output depth D2.
        F: spatial extent of each filter (int or (height, width)).
        S: stride. Default: 1.
        P: zero padding on each border. Default: 0 (``P=(F-1)//2`` with S=1 keeps the size).
        dilation: 1 for an ordinary filter, 2 for one gap between taps. Default: 1.
        fit: None (raise on a stride that does not fit), ``"pad"`` or ``"crop"``.
        bias: whether the layer has biases. Default: True (False when a
            BatchNorm follows, whose beta does the same job, as in ResNet).

    Input shape ``(H1, W1, D1)``; output shape ``(H2, W2, K)`` with
    ``W2 = (W1 - F + 2P)/S + 1`` (F replaced by ``dilation*(F-1)+1`` when dilated).

    Parameters: weights ``(F, F, D1, K)``, that is ``(F*F*D1)*K`` weights, and
    K biases (none with ``bias=False``). Initialised He-normal (std
    ``sqrt(2/(F*F*D1))``), biases zero.

    Raises:
        ShapeError: when ``(W1 - F + 2P)/S`` is not an integer (and ``fit`` is
            None), or the filter is larger than the padded input.

    Example:
        >>> from volnet import Sequential
        >>> net = Sequential([Conv2D(K=12, F=3, P=1)], input_shape=(32, 32, 3))
        >>> net.output_shape, net.num_params   # 3*3*3*12 weights + 12 biases
        ((32, 32, 12), 336)
    """

    def __init__(self, K: int, F, S=1, P=0, dilation=1, fit: str | None = None, bias: bool = True):
        super().__init__()
        self.K, self.F, self.S, self.P, self.dilation, self.fit = int(K), F, S, P, dilation, fit
        self.bias = bool(bias)
        if self.K < 1:
            raise ValueError(f"Conv2D: K (number of filters) must be >= 1, got {K}")

    def output_shape(self, input_shape):
        volume = require_volume(self, input_shape)
        g = geometry((1, *volume), self.F, self.S, self.P, self.dilation, fit=self.fit, layer=self.label)
        return (*g.out_hw, self.K)

    def _init_params(self, input_shape, rng, dtype):
        Fh, Fw = pair(self.F, "F")
        D = input_shape[2]
        weight = Param("weight", he_normal(rng, (Fh, Fw, D, self.K), Fh * Fw * D, dtype))
        return [weight, Param("bias", np.zeros(self.K, dtype=dtype))] if self.bias else [weight]

    fuses_relu = True

    def forward(self, x, train=False, relu=False):
        """The layer's output; ``relu=True`` also applies a following ReLU (see ``forward_layers``)."""
        w = self._params[0].value
        b = self._params[1].value if self.bias else np.zeros(self.K, dtype=w.dtype)
        out, cache = ops.conv_forward(x, w, b, self.S, self.P, self.dilation, fit=self.fit, layer=self.label,
                                      relu=relu)
        self._keep(cache, train)
        return out

    def backward(self, dout, input_grad=True):
        dx, dw, db = ops.conv_backward(dout, self._take_cache(), input_grad)
        self._params[0].grad = dw
        if self.bias:
            self._params[1].grad = db
        return dx

    def get_config(self):
        return {"K": self.K, "F": self.F, "S": self.S, "P": self.P, "dilation": self.dilation, "fit": self.fit,
                "bias": self.bias}
