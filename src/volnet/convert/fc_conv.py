"""Turn FC layers into CONV layers, and a CONV layer into its (mostly zero) FC matrix.

The notes: an FC layer and a CONV layer compute the same kind of function
(dot products). An FC layer with K neurons looking at a 7x7x512 volume is a
CONV layer with F=7, P=0, S=1, K filters: the filter is exactly as large as
the input, so a single depth column fits and the output is 1x1xK. Later FC
layers become 1x1 CONVs. The converted network computes the same scores on
the original input, and on a larger image it slides the whole original
network across it in one forward pass, producing a map of class scores.

Because volnet flattens a volume in (H, W, D) order and CONV weights are
(F, F, D, K), an FC weight matrix ``(H*W*D, K)`` *is* the CONV filter bank
``(H, W, D, K)``: the conversion is a reshape, no weight surgery.
"""

from __future__ import annotations

import math

import numpy as np

from ..layers import FC, Conv2D, Flatten
from ..layers.base import layer_from_config
from ..net import Sequential
from ..ops.window import geometry
from ..shapes import ShapeError, format_volume, pair


def _clone(layer):
    return layer_from_config({"type": type(layer).__name__, **layer.get_config()})


def _copy_state(source, target) -> None:
    """Copy parameters and buffers from one layer into an equivalent one, reshaping as needed."""
    for (_, old), (_, new) in zip(source.named_params(), target.named_params()):
        new.value[...] = old.value.reshape(new.value.shape)
    for (_, old), (_, new) in zip(source.named_buffers().items(), target.named_buffers().items()):
        new[...] = old.reshape(new.shape)


def score_map_geometry(net) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(crop_size, stride)`` of the score map a converted ``net`` produces.

    Score-map position (i, j) corresponds to the crop of ``crop_size`` (the
    network's input H, W) starting at pixel ``(i*stride[0], j*stride[1])``;
    the stride is the product of the strides before the first FC layer.
    """
    stride = [1, 1]
    for layer in net.layers:
        if isinstance(layer, FC):
            break
        for axis, s in enumerate(pair(getattr(layer, "S", 1), "S")):
            stride[axis] *= s
    return tuple(net.input_shape[:2]), tuple(stride)


def fc_to_conv(net: Sequential, input_shape=None) -> Sequential:
    """A fully-convolutional copy of ``net`` with the same weights; every FC becomes a CONV.

    The first FC after an ``H x W x D`` volume becomes ``Conv2D(K, F=(H, W), S=1, P=0)``;
    FC layers after it become 1x1 CONVs; Flatten layers are dropped. With
    ``input_shape`` larger than the original input, the result maps an image
    to an ``(H', W', classes)`` volume of class scores, one per crop position
    (see :func:`score_map_geometry`).

    Equal to running the original network on each crop when the layers
    before the first FC use no zero padding; with padding, the converted net
    sees the neighbouring pixels where a crop would see zeros.

    Raises:
        ShapeError: when a larger input does not tile into whole crops
            (the message names the input sizes that do).
    """
    pairs, new_layers = [], []
    volume = net.input_shape
    for layer, out_shape in zip(net.layers, net.shapes):
        if isinstance(layer, Flatten):
            continue
        if isinstance(layer, FC):
            H, W, D = volume if len(volume) == 3 else (1, 1, math.prod(volume))
            new = Conv2D(layer.K, F=(H, W) if H != W else H)
            volume = (1, 1, layer.K)
        else:
            new = _clone(layer)
            volume = out_shape if len(out_shape) == 3 else (1, 1, out_shape[0])
        pairs.append((layer, new))
        new_layers.append(new)
    target = tuple(input_shape) if input_shape is not None else net.input_shape
    try:
        converted = Sequential(new_layers, target, seed=net.seed, dtype=net.dtype)
    except ShapeError as error:
        (ch, cw), (sh, sw) = score_map_geometry(net)
        raise ShapeError(
            f"input {format_volume(target)} does not slide the {ch}x{cw} network evenly ({error}); "
            f"use sizes {ch} + k*{sh} by {cw} + k*{sw} (e.g. {ch + sh}x{cw + sw}x{target[2]})"
        ) from None
    for old, new in pairs:
        _copy_state(old, new)
    return converted


def conv_to_fc(layer: Conv2D, input_shape) -> tuple[np.ndarray, np.ndarray]:
    """The dense ``(H*W*D, H2*W2*K)`` matrix and tiled bias computing CONV ``layer`` on ``input_shape``.

    ``x.reshape(N, -1) @ matrix + bias`` equals the layer's output flattened.
    The matrix is mostly zero (each output sees only its F x F receptive
    field: local connectivity) and its non-zero blocks repeat the same
    filter at every position (parameter sharing), as the notes describe.
    """
    w, b = (p.value for p in layer.params())
    H, W, D = input_shape
    g = geometry((1, H, W, D), layer.F, layer.S, layer.P, layer.dilation, fit=layer.fit, layer=layer.label)
    (H2, W2), (Fh, Fw), (Sh, Sw), (dh, dw) = g.out_hw, g.size, g.stride, g.dilation
    top, left, K = g.pads[0], g.pads[2], w.shape[3]
    matrix = np.zeros((H, W, D, H2, W2, K), dtype=w.dtype)
    for i in range(H2):
        for j in range(W2):
            for u in range(Fh):
                for v in range(Fw):
                    row, col = i * Sh + u * dh - top, j * Sw + v * dw - left
                    if 0 <= row < H and 0 <= col < W:  # taps on zero padding contribute nothing
                        matrix[row, col, :, i, j, :] = w[u, v]
    return matrix.reshape(H * W * D, H2 * W2 * K), np.tile(b, H2 * W2)
