"""POOL layers: max, average and L2-norm pooling."""

from __future__ import annotations

from .. import ops
from ..ops.pool import pool_geometry
from .base import Layer, require_volume


class _Pool(Layer):
    """Shared by the three pooling layers; ``mode`` picks the function."""

    mode = "max"

    def __init__(self, F=2, S=None, P=0, fit: str | None = None):
        super().__init__()
        self.F, self.S, self.P, self.fit = F, F if S is None else S, P, fit

    def output_shape(self, input_shape):
        volume = require_volume(self, input_shape)
        g = pool_geometry((1, *volume), self.F, self.S, self.P, fit=self.fit, layer=self.label)
        return (*g.out_hw, volume[2])

    def forward(self, x, train=False):
        out, cache = ops.pool_forward(x, self.F, self.S, self.mode, pad=self.P, fit=self.fit, layer=self.label,
                                      switches=train)
        self._keep(cache, train)
        return out

    def backward(self, dout, input_grad=True):
        return ops.pool_backward(dout, self._take_cache())

    def get_config(self):
        return {"F": self.F, "S": self.S, "P": self.P, "fit": self.fit}

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


class AvgPool(_Pool):
    """Average pooling: the mean of each F x F window, per depth slice.

    Same arguments and shapes as :class:`MaxPool`; no parameters. Padding
    (``P``) counts as zeros in the mean, like PyTorch's ``count_include_pad``.
    """

    mode = "avg"


class L2Pool(_Pool):
    """L2-norm pooling: ``sqrt(sum of squares)`` of each F x F window, per depth slice.

    Same arguments and shapes as :class:`MaxPool`; no parameters.
    """

    mode = "l2"
