"""The locally-connected layer: a CONV layer without parameter sharing."""

from __future__ import annotations

from .. import ops
from ..ops.local import local_backward_workspace, local_workspace
from ..ops.window import geometry
from ..shapes import pair
from .base import Keyword, Layer, Param, ParamArray, he_normal, require_volume, torch_zero_pad, zeros
from .conv import window_costs


class LocallyConnected(Layer):
    """Locally-connected layer: K filters of F x F x D1 at every output position, none shared.

    Computes ``out[i, j, k] = sum(x[window(i, j)] * w[i, j, ..., k]) + b[i, j, k]``:
    the same receptive fields as :class:`Conv2D`, but each position ``(i, j)``
    has its own filters and biases.

    Args:
        K: number of filters per position, the output depth D2.
        F: spatial extent of each filter (int or (height, width)).
        S: stride. Default: 1.
        P: zero padding on each border. Default: 0.
        fit: None (raise on a stride that does not fit), ``"pad"`` or ``"crop"``.

    Input shape ``(H1, W1, D1)``; output shape ``(H2, W2, K)`` with
    ``W2 = (W1 - F + 2P)/S + 1``, as for Conv2D.

    Parameters: weights ``(H2, W2, F, F, D1, K)`` and biases ``(H2, W2, K)``,
    that is ``H2*W2*(F*F*D1*K + K)``: H2*W2 times the parameters of a CONV
    layer with the same F, D1 and K. Initialised He-normal (std
    ``sqrt(2/(F*F*D1))``), biases zero.

    When to use it: parameter sharing assumes a feature worth computing at
    one position is worth computing everywhere. Inputs with a specific
    centred structure break that assumption, e.g. aligned faces, where
    eye-specific or hair-specific features should be learned at different
    positions. The price is the parameter count above, and the layer only
    accepts the input size it was built for.

    Raises:
        ShapeError: when ``(W1 - F + 2P)/S`` is not an integer (and ``fit`` is
            None), or the filter is larger than the padded input.

    Example:
        >>> from volnet import Sequential
        >>> net = Sequential([LocallyConnected(K=4, F=3)], input_shape=(8, 8, 3))
        >>> net.output_shape, net.num_params   # 6*6 * (3*3*3*4 weights + 4 biases)
        ((6, 6, 4), 4032)
    """

    kind = "local"
    weight = ParamArray()  # (H2, W2, F, F, D1, K)
    bias = ParamArray()    # (H2, W2, K)
    keyword = Keyword("LC", ("F", "K", "S", "P", "dilation", "fit", "bias"), compact="F", dash="K", modifiers="SPDB")
    counted_in_notes = True

    def __init__(self, K: int, F, S=1, P=0, fit: str | None = None):
        super().__init__()
        self.K, self.F, self.S, self.P, self.fit = int(K), F, S, P, fit
        if self.K < 1:
            raise ValueError(f"LocallyConnected: K (number of filters) must be >= 1, got {K}")

    def output_shape(self, input_shape):
        volume = require_volume(self, input_shape)
        g = geometry((1, *volume), self.F, self.S, self.P, fit=self.fit, layer=self.label)
        return (*g.out_hw, self.K)

    def _init_params(self, input_shape, rng, dtype):
        H2, W2, _ = self.output_shape(input_shape)
        Fh, Fw = pair(self.F, "F")
        D = input_shape[2]
        return [Param("weight", he_normal(rng, (H2, W2, Fh, Fw, D, self.K), Fh * Fw * D, dtype)),
                Param("bias", zeros(rng, (H2, W2, self.K), dtype))]

    def forward(self, x, train=False, *, keep=None, workers=None):
        out, cache = ops.local_forward(x, self.weight, self.bias, self.S, self.P, fit=self.fit, layer=self.label)
        self._keep(cache, train, keep)
        return out

    def backward(self, dout, input_grad=True, *, workers=None):
        dx, dw, db = ops.local_backward(dout, self._take_cache(), input_grad)
        self._params[0].grad, self._params[1].grad = dw, db
        return dx

    def get_config(self):
        return {"K": self.K, "F": self.F, "S": self.S, "P": self.P, "fit": self.fit}

    # -- the description of the kind ---------------------------------------------
    def costs(self, input_shape, output_shape):
        """``(H2*W2*K) * (F*F*D1)`` multiply-adds, as CONV; H2*W2 times its parameters."""
        return window_costs(self, input_shape, output_shape, shared=False)

    def window(self, input_shape):
        return pair(self.F, "F"), pair(self.S, "S"), pair(self.P, "P"), (1, 1)

    def _geometry(self, work):
        return geometry((work.N, *work.input_shape), self.F, self.S, self.P, fit=self.fit)

    def forward_workspace(self, work):
        return local_workspace(self._geometry(work), self.K, work.itemsize)

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
        return local_backward_workspace(self._geometry(work), self.K, work.itemsize, grads=work.grads,
                                        input_grad=input_grad, dout_contiguous=dout_contiguous)

    def to_torch(self, bridge, order):
        """``ZeroPad2d`` with volnet's pads (when any), then
        :class:`~volnet.interop.torch_modules.LocallyConnected2d` (unfold + one batched multiply)."""
        g = geometry((1, *self.input_shape), self.F, self.S, self.P, fit=self.fit, layer=self.label)
        local = bridge.tm.LocallyConnected2d(self.input_shape[2], self.K, g.size, g.stride, g.out_hw)
        modules = [torch_zero_pad(g, bridge.nn), local] if any(g.pads) else [local]
        return bridge.step(self, modules, holder=len(modules) - 1), None

    def torch_arrays(self, gather, scatter):
        """Weights ``(H2, W2, F, F, D1, K)`` become ``(H2*W2, D1*F*F, K)`` (unfold's channel-major columns);
        biases ``(H2, W2, K)`` become ``(K, H2, W2)``."""
        H2, W2, Fh, Fw, D, K = self.weight.shape

        def weight_to(w):
            return w.transpose(0, 1, 4, 2, 3, 5).reshape(H2 * W2, D * Fh * Fw, K)

        def weight_from(t):
            return t.reshape(H2, W2, D, Fh, Fw, K).transpose(0, 1, 3, 4, 2, 5)

        return [("weight", "weight", weight_to, weight_from),
                ("bias", "bias", lambda b: b.transpose(2, 0, 1), lambda t: t.transpose(1, 2, 0))]

    def to_onnx(self, graph, x, input_shape):
        """im2col from standard ops, then one batched matrix multiply over positions, as ``ops.local_forward``:
        a zero ``Pad``; one strided ``Slice`` per filter tap ``(i, j)``, each ``(N, D1, H2, W2)``, and a
        ``Concat`` of them along channels, ``(N, F*F*D1, H2, W2)`` in the weights' ``(i, j, d)`` order;
        ``Reshape`` and ``Transpose`` to rows ``(H2*W2, N, F*F*D1)``; ``MatMul`` with the weights
        ``(H2*W2, F*F*D1, K)``; back to ``(N, K, H2, W2)`` and ``Add`` the biases ``(K, H2, W2)``."""
        g = geometry((1, *input_shape), self.F, self.S, self.P, fit=self.fit, layer=self.label)
        w, b = self.weight, self.bias
        (H2, W2), (Fh, Fw), (Sh, Sw), K = g.out_hw, g.size, g.stride, self.K
        x = graph.zero_pad(x, g.pads)
        axes, steps = graph.ints("tap_axes", [2, 3]), graph.ints("tap_steps", [Sh, Sw])
        taps = [graph.op("Slice", [x, graph.ints(f"tap{i}_{j}_starts", [i, j]),
                                   graph.ints(f"tap{i}_{j}_ends", [i + (H2 - 1) * Sh + 1, j + (W2 - 1) * Sw + 1]),
                                   axes, steps], f"tap{i}_{j}")
                for i in range(Fh) for j in range(Fw)]
        columns = graph.op("Concat", taps, "im2col", axis=1)
        rows = graph.op("Reshape", [columns, graph.ints("rows_shape", [0, Fh * Fw * input_shape[2], H2 * W2])], "rows")
        rows = graph.op("Transpose", [rows], "rows_by_position", perm=[2, 0, 1])
        out = graph.op("MatMul", [rows, graph.weight("weight", w.reshape(H2 * W2, -1, K))], "matmul")
        out = graph.op("Transpose", [out], "by_filter", perm=[1, 2, 0])
        out = graph.op("Reshape", [out, graph.ints("out_shape", [0, K, H2, W2])], "volume")
        return graph.op("Add", [out, graph.weight("bias", b.transpose(2, 0, 1))], "add_bias")
