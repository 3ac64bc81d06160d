"""The notes' CONV demo with a real network's numbers: one output value as receptive field x filter, summed, plus bias.

``out[i, j, k] = sum(Xp[i*S : i*S + F, j*S : j*S + F, :] * W[:, :, :, k]) + b[k]``, Xp the input
zero-padded by P (taps ``dilation`` apart). :func:`conv_demo` returns every term of that sum
for one position; :func:`conv_demo_data` packs what the report's page needs to step
through all positions itself, as the notes' animation does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops.window import geometry, pad_spatial


@dataclass(frozen=True)
class ConvDemo:
    """One output value of a CONV layer, term by term.

    ``window`` and ``weights`` are ``(F, F, D1)``; ``products = window * weights``;
    ``total = products.sum() + bias`` equals the layer's output ``[i, j, k]``.
    ``rows``/``cols`` are the padded-input rows and columns the window reads.
    """

    position: tuple[int, int]
    filter: int
    window: np.ndarray
    weights: np.ndarray
    products: np.ndarray
    bias: float
    total: float
    rows: tuple[int, ...]
    cols: tuple[int, ...]


def _layer_geometry(layer, volume):
    return geometry((1, *volume.shape), layer.F, layer.S, layer.P, layer.dilation, fit=layer.fit, layer=layer.label)


def conv_demo(layer, volume: np.ndarray, position: tuple[int, int], k: int = 0) -> ConvDemo:
    """The terms of output ``[i, j, k]`` of a built Conv2D ``layer`` on its input ``volume`` ``(H, W, D1)``."""
    g = _layer_geometry(layer, volume)
    i, j = position
    if not (0 <= i < g.out_hw[0] and 0 <= j < g.out_hw[1]):
        raise ValueError(f"position {position} is outside the {g.out_hw[0]}x{g.out_hw[1]} output")
    xp = pad_spatial(volume[None].astype(np.float64), g.pads)[0]
    rows = tuple(i * g.stride[0] + a * g.dilation[0] for a in range(g.size[0]))
    cols = tuple(j * g.stride[1] + c * g.dilation[1] for c in range(g.size[1]))
    window = xp[np.ix_(rows, cols)]
    weights = layer.weight[..., k].astype(np.float64)
    bias = 0.0 if layer.bias is None else float(layer.bias[k])
    products = window * weights
    return ConvDemo((i, j), k, window, weights, products, bias, float(products.sum() + bias), rows, cols)


def conv_demo_data(layer, volume: np.ndarray, output: np.ndarray, k: int = 0, max_depth: int = 3,
                   digits: int = 6) -> dict:
    """JSON-able data for the page's demo: the padded input (first ``max_depth`` depth slices shown, all
    summed), filter ``k``, its bias, the geometry, and volnet's output slice ``output[:, :, k]`` to check against."""
    g = _layer_geometry(layer, volume)
    xp = pad_spatial(volume[None].astype(np.float64), g.pads)[0]
    weights = layer.weight[..., k].astype(np.float64)
    bias = 0.0 if layer.bias is None else float(layer.bias[k])
    return {
        "label": layer.label, "k": k, "F": list(g.size), "S": list(g.stride), "dilation": list(g.dilation),
        "pads": list(g.pads), "out_hw": list(g.out_hw), "depth": int(volume.shape[2]), "shown_depth":
        min(max_depth, int(volume.shape[2])),
        "input": np.round(np.moveaxis(xp, 2, 0), digits).tolist(),
        "weights": np.round(np.moveaxis(weights, 2, 0), digits).tolist(),
        "bias": round(bias, digits),
        "output": np.round(output[:, :, k].astype(np.float64), digits).tolist(),
    }
