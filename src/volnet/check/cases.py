"""The configurations a learner's function is tried on, as Hypothesis strategies.

A configuration is a dict in the assignment's own names (``x_shape``
``[N, C, H, W]``, ``w_shape``, ``stride``, ``pad``, ``pool_height``...) plus
a ``seed`` for the array values. They cover the notes' cases: strides 1-3,
pads 0-2, filters 1x1 to 5x5 (square or not), non-square inputs, depth 1,
batch 1 and more, pooling windows that overlap (stride < window) and that
do not. Sizes are drawn so that the output size is an integer, and
small-first: Hypothesis shrinks a failure towards the fewest images,
channels and filters, then the smallest windows and outputs.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

SEEDS = st.integers(0, 2**32 - 1)


def _input_size(draw, extent: int, stride: int, pad: int) -> int:
    """An input size H with ``(H + 2*pad - extent) / stride`` a whole number and H >= 1."""
    lowest = max(1, math.ceil((1 - extent + 2 * pad) / stride) + 1)
    out = draw(st.integers(lowest, lowest + 3))
    return (out - 1) * stride + extent - 2 * pad


@st.composite
def conv(draw) -> dict:
    N, C, F = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    HH, WW = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    H, W = _input_size(draw, HH, stride, pad), _input_size(draw, WW, stride, pad)
    return dict(x_shape=[N, C, H, W], w_shape=[F, C, HH, WW], stride=stride, pad=pad, seed=draw(SEEDS))


@st.composite
def pool(draw) -> dict:
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pool_height, pool_width, stride = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    H, W = _input_size(draw, pool_height, stride, 0), _input_size(draw, pool_width, stride, 0)
    return dict(x_shape=[N, C, H, W], pool_height=pool_height, pool_width=pool_width, stride=stride,
                seed=draw(SEEDS))


@st.composite
def affine(draw) -> dict:
    N = draw(st.integers(1, 3))
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    M = draw(st.integers(1, 4))
    return dict(x_shape=[N, *dims], w_shape=[math.prod(dims), M], seed=draw(SEEDS))


@st.composite
def elementwise(draw) -> dict:
    N = draw(st.integers(1, 3))
    return dict(x_shape=[N, *draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))], seed=draw(SEEDS))


@st.composite
def scores(draw) -> dict:
    return dict(x_shape=[draw(st.integers(1, 4)), draw(st.integers(2, 5))], seed=draw(SEEDS))


STRATEGIES = {"conv": conv(), "pool": pool(), "affine": affine(), "relu": elementwise(),
              "softmax": scores(), "svm": scores()}


def arrays(family: str, config: dict) -> dict:
    """The float64 arrays of a configuration: x, and w and b (affine, conv) or labels y (losses)."""
    rng = np.random.default_rng(config["seed"])
    result = {"x": rng.standard_normal(config["x_shape"])}
    if family in ("affine", "conv"):
        result["w"] = rng.standard_normal(config["w_shape"])
        result["b"] = rng.standard_normal(config["w_shape"][0 if family == "conv" else 1])
    elif family in ("softmax", "svm"):
        N, C = config["x_shape"]
        result["y"] = rng.integers(0, C, N)
    return result


def size(config: dict) -> tuple:
    """Order of configurations, smallest first: images, then the other sizes in the order they are written."""
    numbers = [n for key, value in config.items() if key != "seed"
               for n in (value if isinstance(value, list) else [value])]
    return (config["x_shape"][0], math.prod(config["x_shape"]), numbers)
