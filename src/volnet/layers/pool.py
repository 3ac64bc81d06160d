"""POOL layers: max, average and L2-norm pooling, and global average pooling."""

from __future__ import annotations

import math

from .. import ops
from ..ops.memo import hashable
from ..ops.pool import pool_backward_workspace, pool_geometry, pool_workspace
from ..shapes import pair
from .base import Costs, Keyword, Layer, inside_padding, keeps, require_volume, torch_zero_pad


class _Pool(Layer):
    """Shared by the three pooling layers; ``mode`` picks the function."""

    mode = "max"
    kind = "pool"
    counted_in_notes = True
    passes_back_rectified = True  # backward takes a ReLU's output and runs its backward too (see backward)
    _ARGS = ("F", "S", "P", "fit")
    # other ops per output: max pooling's comparisons, average pooling's adds and divide, L2's squares,
    # adds and root, for windows of ``taps`` values
    _OPS_PER_OUTPUT = {"max": lambda taps: taps - 1, "avg": lambda taps: taps, "l2": lambda taps: 2 * taps}

    def __init__(self, F=2, S=None, P=0, fit: str | None = None):
        super().__init__()
        self.F, self.S, self.P, self.fit = F, F if S is None else S, P, fit

    def output_shape(self, input_shape):
        volume = require_volume(self, input_shape)
        g = pool_geometry((1, *volume), self.F, self.S, self.P, fit=self.fit, layer=self.label)
        return (*g.out_hw, volume[2])

    def forward(self, x, train=False, *, keep=None, workers=None):
        keeping = keeps(train, keep)
        out, cache = ops.pool_forward(x, self.F, self.S, self.mode, pad=self.P, fit=self.fit, layer=self.label,
                                      switches=keeping, workers=workers)
        self._keep(cache, keeping)
        return out

    def inference_step(self, batch_shape, dtype, workers, norm=None, relu=None):
        """``x -> out`` on batches of ``batch_shape`` in inference (see ``volnet.layers.inference``; nothing fuses
        into a POOL): its geometry and kernel worked out here."""
        step = ops.pool.forward_step(tuple(batch_shape), dtype, hashable(self.F), hashable(self.S), self.mode,
                                     hashable(self.P), self.fit, self.label, False, workers)
        return lambda x: step(x)[0]

    def backward(self, dout, input_grad=True, *, workers=None, rectified=None):
        """``rectified``: the output of the ReLU below, whose backward this one then runs too
        (:func:`volnet.layers.paths.backward_layers` fuses the pair)."""
        return ops.pool_backward(dout, self._take_cache(), workers=workers, rectified=rectified)

    def get_config(self):
        return {"F": self.F, "S": self.S, "P": self.P, "fit": self.fit}

    # -- the description of the kind ---------------------------------------------
    def costs(self, input_shape, output_shape):
        taps = math.prod(pair(self.F, "F"))
        return Costs(0, 0, math.prod(output_shape) * self._OPS_PER_OUTPUT[self.mode](taps))

    def window(self, input_shape):
        return pair(self.F, "F"), pair(self.S, "S"), pair(self.P, "P"), (1, 1)

    def _geometry(self, work):
        return pool_geometry((work.N, *work.input_shape), self.F, self.S, self.P, fit=self.fit)

    def forward_workspace(self, work):
        return pool_workspace(self._geometry(work), self.mode, work.itemsize, work.train)

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
        return pool_backward_workspace(self._geometry(work), self.mode, work.itemsize)

    def to_torch(self, bridge, order):
        """``MaxPool2d(padding=P)`` (``ceil_mode`` for ``fit="pad"``: volnet's ``-inf`` padding never
        wins); ``AvgPool2d(padding=P)`` (``count_include_pad`` as volnet) or ``LPPool2d(2)``, after a
        ``ZeroPad2d`` where volnet pads beyond P or (L2) at all."""
        nn = bridge.nn
        g = pool_geometry((1, *self.input_shape), self.F, self.S, self.P, fit=self.fit, layer=self.label)
        pad = (g.pads[0], g.pads[2])
        if self.mode == "max":
            pool = nn.MaxPool2d(g.size, g.stride, padding=pad, ceil_mode=not inside_padding(g))
            return bridge.step(self, [pool]), None
        if self.mode == "avg" and inside_padding(g):
            return bridge.step(self, [nn.AvgPool2d(g.size, g.stride, padding=pad)]), None
        pool = nn.AvgPool2d(g.size, g.stride) if self.mode == "avg" else nn.LPPool2d(2, g.size, g.stride)
        # Padded zeros count in volnet's mean and add nothing to a sum of squares: pad them explicitly.
        return bridge.step(self, [pool] if max(g.pads) <= 0 else [torch_zero_pad(g, nn), pool]), None

    _ONNX_OPS = {"max": ("MaxPool", "maxpool"), "avg": ("AveragePool", "avgpool"), "l2": ("LpPool", "l2pool")}

    def to_onnx(self, graph, x, input_shape):
        """``MaxPool`` with the geometry's pads (ONNX ignores padding in a max, as volnet's ``-inf``);
        ``AveragePool(count_include_pad=1)`` within P; beyond P (``fit="pad"``), or for ``LpPool(p=2)``,
        an explicit zero ``Pad`` first."""
        g = pool_geometry((1, *input_shape), self.F, self.S, self.P, fit=self.fit, layer=self.label)
        op, suffix = self._ONNX_OPS[self.mode]
        window = {"kernel_shape": list(g.size), "strides": list(g.stride)}
        if self.mode == "max":
            return graph.op(op, [x], suffix, **window, pads=graph.pads(g.pads))
        if self.mode == "avg" and inside_padding(g):
            return graph.op(op, [x], suffix, **window, pads=graph.pads(g.pads), count_include_pad=1)
        extra = {"p": 2} if self.mode == "l2" else {}
        return graph.op(op, [graph.zero_pad(x, g.pads)], suffix, **window, **extra)

    def __repr__(self):
        pad = f", P={self.P}" if self.P else ""
        fit = f", fit={self.fit!r}" if self.fit else ""
        return f"{type(self).__name__}(F={self.F}, S={self.S}{pad}{fit})"


class MaxPool(_Pool):
    """Max pooling: the largest value of each F x F window, per depth slice.

    Args:
        F: window extent. Default: 2.
        S: stride. Default: F (non-overlapping; F=3, S=2 is the overlapping kind).
        P: padding on each border, at most F/2. Default: 0 (pooling is
            usually unpadded; F=3, S=1, P=1 keeps the size, as in GoogLeNet's
            inception module). Max pooling pads with -inf, so padding never
            wins; average and L2-norm pooling pad with zeros.
        fit: None, ``"pad"`` or ``"crop"`` for windows that do not tile the input.

    Input ``(H1, W1, D)``, output ``(H2, W2, D)`` with ``W2 = (W1 - F)/S + 1``
    (``(W1 - F + 2P)/S + 1`` when padded).
    No parameters. Backward routes each gradient to the input that held the
    maximum, through the switches recorded in the forward pass.

    Example:
        >>> from volnet import Sequential
        >>> Sequential([MaxPool(2, 2)], input_shape=(32, 32, 12)).output_shape
        (16, 16, 12)
        >>> Sequential([MaxPool(3, 1, P=1)], input_shape=(28, 28, 192)).output_shape
        (28, 28, 192)
    """

    mode = "max"

    @property
    def fused_pool_size(self) -> int | None:
        """F, where the windows are square, as wide as their stride and unpadded and the pool runs the
        ``forward`` of this class: a CONV in inference may then pool inside its own output pass
        (:func:`volnet.layers.paths.fused_pool`); else None."""
        (Fh, Fw), stride, pads = pair(self.F, "F"), pair(self.S, "S"), pair(self.P, "P")
        plain = type(self).forward is _Pool.forward
        return Fh if plain and Fh == Fw and stride == (Fh, Fw) and pads == (0, 0) else None

    keyword = Keyword("POOL", _Pool._ARGS, positional=2, compact="F", modifiers="SP", aliases=("MAXPOOL",), pool=True)


class AvgPool(_Pool):
    """Average pooling: the mean of each F x F window, per depth slice.

    Same arguments and shapes as :class:`MaxPool`; no parameters. Padding
    (``P``) counts as zeros in the mean, like PyTorch's ``count_include_pad``.
    """

    mode = "avg"
    keyword = Keyword("AVGPOOL", _Pool._ARGS, positional=2, compact="F", modifiers="SP", pool=True)


class L2Pool(_Pool):
    """L2-norm pooling: ``sqrt(sum of squares)`` of each F x F window, per depth slice.

    Same arguments and shapes as :class:`MaxPool`; no parameters.
    """

    mode = "l2"
    passes_back_rectified = False  # its backward runs tap by tap in NumPy: fusing the ReLU in would save nothing
    keyword = Keyword("L2POOL", _Pool._ARGS, positional=2, compact="F", modifiers="SP", pool=True)


class GlobalAvgPool(Layer):
    """Global average pooling: the mean of each depth slice, one number per slice.

    ``out[0, 0, d] = mean(x[:, :, d])``: average pooling whose window is the
    whole input (F = H x W), which is how it is computed. It replaces the
    FC layers at the top of GoogLeNet and ResNet: the class scores then come
    from an FC layer on D numbers instead of H*W*D.

    Input shape ``(H, W, D)``; output shape ``(1, 1, D)``. No parameters.
    Backward spreads each gradient evenly, ``1/(H*W)`` to every input of its slice.

    Example:
        >>> from volnet import Sequential
        >>> Sequential([GlobalAvgPool()], input_shape=(7, 7, 512)).output_shape
        (1, 1, 512)
    """

    kind = "global_pool"
    keyword = Keyword("GAP")
    counted_in_notes = True
    sees_whole_input = True

    def output_shape(self, input_shape):
        _, _, D = require_volume(self, input_shape)
        return (1, 1, D)

    # -- the description of the kind: average pooling whose window is the whole input --------
    def costs(self, input_shape, output_shape):
        return Costs(0, 0, math.prod(input_shape))  # an add per input value (and a divide per output)

    def _geometry(self, work):
        return pool_geometry((work.N, *work.input_shape), work.input_shape[:2], None)

    def forward_workspace(self, work):
        return pool_workspace(self._geometry(work), "avg", work.itemsize, work.train)

    def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
        return pool_backward_workspace(self._geometry(work), "avg", work.itemsize)

    def to_torch(self, bridge, order):
        return bridge.step(self, [bridge.nn.AdaptiveAvgPool2d(1)]), None

    def to_onnx(self, graph, x, input_shape):
        return graph.op("GlobalAveragePool", [x], "gap")

    def forward(self, x, train=False, *, keep=None, workers=None):
        out, cache = ops.pool_forward(x, x.shape[1:3], None, "avg", layer=self.label)
        self._keep(cache, train, keep)
        return out

    def backward(self, dout, input_grad=True, *, workers=None):
        return ops.pool_backward(dout, self._take_cache())
