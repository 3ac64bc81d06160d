"""The CONV layer."""

from __future__ import annotations

from .. import ops
from ..ops.conv_workspace import conv_backward_workspace, conv_workspace
from ..ops.memo import hashable
from ..ops.window import geometry
from ..shapes import pair
from .base import (Costs, Keyword, Layer, Param, ParamArray, he_normal, inside_padding, require_volume, torch_zero_pad,
                   zeros)
from .paths import forward_group


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

    kind = "conv"
    weight = ParamArray()  # (F, F, D1, K)
    bias = ParamArray()    # (K,), None with bias=False
    keyword = Keyword("CONV", ("F", "K", "S", "P", "dilation", "fit", "bias"), compact="F", dash="K",
                      modifiers="SPDB")
    counted_in_notes = True

    def __init__(self, K: int, F, S=1, P=0, dilation=1, fit: str | None = None, bias: bool = True):
        super().__init__()
        self.K, self.F, self.S, self.P, self.dilation, self.fit = int(K), F, S, P, dilation, fit
        self.use_bias = bool(bias)
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
        return [weight, Param("bias", zeros(rng, self.K, dtype))] if self.use_bias else [weight]

    fuses_relu = fuses_affine = fuses_pool = True

    def forward(self, x, train=False, *, keep=None, workers=None, relu=False, affine=None):
        """The layer's output; ``relu=True`` also applies a following ReLU, ``affine`` a following BatchNorm in
        inference (``(scale, shift)``, see ``forward_layers``)."""
        out, cache = ops.conv_forward(x, self.weight, self.bias, self.S, self.P, self.dilation, fit=self.fit,
                                      layer=self.label, relu=relu, affine=affine, workers=workers)
        self._keep(cache, train, keep)
        return out

    def inference_step(self, batch_shape, dtype, workers, norm=None, relu=None, pool=None):
        """``x -> out`` on batches of ``batch_shape`` in inference, with the BatchNorm ``norm``, the ReLU ``relu``
        and the max pool ``pool`` (its ``fused_pool_size`` tiling this layer's output) fused where given (see
        ``volnet.layers.inference``): the weights and biases read at each call, the rest (checks, geometry,
        plan, kernel) worked out here."""
        w, b = self.weight, self.bias
        shapes = (w.shape, None if b is None else b.shape)
        step = ops.conv.forward_step(tuple(batch_shape), dtype, w.shape, w.dtype, shapes[1], hashable(self.S),
                                     hashable(self.P), hashable(self.dilation), self.fit, self.label, relu is not None,
                                     norm is not None, workers, 1 if pool is None else pool.fused_pool_size)

        def convolve(x):
            w, b = self.weight, self.bias
            if (w.shape, None if b is None else b.shape) != shapes:  # parameters replaced: checked again
                out = forward_group(self, norm, relu, x, False, workers)
                return out if pool is None else pool.forward(out, workers=workers)
            return step(x, w, b, None if norm is None else norm.inference_affine())[0]

        return convolve

    def backward(self, dout, input_grad=True, *, workers=None):
        dx, dw, db = ops.conv_backward(dout, self._take_cache(), input_grad, workers=workers)
        self._params[0].grad = dw
        if self.use_bias:
            self._params[1].grad = db
        return dx

    def get_config(self):
        return {"K": self.K, "F": self.F, "S": self.S, "P": self.P, "dilation": self.dilation, "fit": self.fit,
                "bias": self.use_bias}

    # -- the description of the kind ---------------------------------------------
    def costs(self, input_shape, output_shape):
        """``(H2*W2*K) * (F*F*D1)`` multiply-adds; a bias add per output value."""
        return window_costs(self, input_shape, output_shape, shared=True)

    def window(self, input_shape):
        return pair(self.F, "F"), pair(self.S, "S"), pair(self.P, "P"), pair(self.dilation, "dilation")

    def _geometry(self, work):
        return geometry((work.N, *work.input_shape), self.F, self.S, self.P, self.dilation, fit=self.fit)

    def forward_workspace(self, work, pool: int = 1):
        """``pool``: the window of a max pool its inference step pools (``volnet.layers.inference``)."""
        return conv_workspace(self._geometry(work), self.K, work.itemsize, work.cores, pool)

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
        return conv_backward_workspace(self._geometry(work), self.K, work.itemsize, work.cores, grads=work.grads,
                                       input_grad=input_grad, dout_contiguous=dout_contiguous)

    def to_torch(self, bridge, order):
        """``Conv2d``; ``fit="pad"`` pads bottom/right more than top/left: ``ZeroPad2d`` first, then
        ``Conv2d(padding=0)``. ``fit="crop"``: ``Conv2d(padding=P)``, since PyTorch floors the output size."""
        g = geometry((1, *self.input_shape), self.F, self.S, self.P, self.dilation, fit=self.fit, layer=self.label)
        conv = dict(in_channels=self.input_shape[2], out_channels=self.K, kernel_size=g.size, stride=g.stride,
                    dilation=g.dilation, bias=self.use_bias)
        if inside_padding(g):
            modules = [bridge.nn.Conv2d(**conv, padding=(g.pads[0], g.pads[2]))]
        else:
            modules = [torch_zero_pad(g, bridge.nn), bridge.nn.Conv2d(**conv, padding=0)]
        return bridge.step(self, modules, holder=len(modules) - 1), None

    def torch_arrays(self, gather, scatter):
        """Weights ``(F, F, D1, K)`` become ``(K, D1, F, F)``."""
        weight = ("weight", "weight", lambda w: w.transpose(3, 2, 0, 1), lambda t: t.transpose(2, 3, 1, 0))
        return [weight, ("bias", "bias", _same, _same)] if self.use_bias else [weight]

    def to_onnx(self, graph, x, input_shape):
        """``Conv``, weights ``(K, D1, F, F)``; ``fit`` as the node's (asymmetric) pads (``graph.pads``)."""
        g = geometry((1, *input_shape), self.F, self.S, self.P, self.dilation, fit=self.fit, layer=self.label)
        inputs = [x, graph.weight("weight", self.weight.transpose(3, 2, 0, 1))]
        if self.use_bias:
            inputs.append(graph.weight("bias", self.bias))
        return graph.op("Conv", inputs, "conv", kernel_shape=list(g.size), strides=list(g.stride),
                        dilations=list(g.dilation), pads=graph.pads(g.pads))


def _same(a):
    return a


def window_costs(layer, input_shape, output_shape, shared: bool) -> Costs:
    """CONV (``shared``) and locally-connected costs: ``(H2*W2*K) * (F*F*D1)`` multiply-adds either way;
    F*F*D1*K weights (times H2*W2 positions unshared) and a bias per filter (per position unshared)."""
    (Fh, Fw), D, K = pair(layer.F, "F"), input_shape[2], output_shape[2]
    positions = output_shape[0] * output_shape[1]
    weights = Fh * Fw * D * K
    biases = K if getattr(layer, "use_bias", True) else 0
    if not shared:
        weights, biases = positions * weights, positions * biases
    return Costs(weights + biases, positions * K * Fh * Fw * D, positions * K if biases else 0, (weights, biases))
