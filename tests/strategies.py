"""Hypothesis strategies and checks shared by the kernel tests (importable: pytest's ``pythonpath`` holds tests/)."""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from hypothesis import strategies as st

from volnet.ops import jit, winograd


@st.composite
def window_settings(draw, depths=st.integers(1, 3), batches=st.integers(1, 2)):
    """A random CONV-like setting, small enough for the naive loops; non-square, with pairs per axis.

    ``depths`` draws the input depth D (kernels that switch scheme by depth pass a wider one), ``batches``
    the batch size N.

    With fit=None the input size is built so that the division is exact;
    with fit="pad"/"crop" up to S-1 extra rows leave the last filter hanging over.
    Returns ``x_shape``, ``out_hw``, ``F``, ``K``, ``seed`` and the kernel's ``hyper`` keywords.
    """
    fit = draw(st.sampled_from([None, "pad", "crop"]))
    F, S, P, dil, hw, out_hw = [], [], [], [], [], []
    for _ in range(2):  # height, then width
        f, s, p, d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(0, 2)),
                      draw(st.integers(1, 2)))
        extent = d * (f - 1) + 1
        extra = draw(st.integers(0, s - 1)) if fit else 0
        lowest = max(1, math.ceil((1 - extent + 2 * p - extra) / s) + 1)  # keeps the input >= 1
        out = draw(st.integers(lowest, lowest + 3))
        F.append(f), S.append(s), P.append(p), dil.append(d)
        hw.append((out - 1) * s + extent - 2 * p + extra)
        out_hw.append(out)
    N, D, K = draw(batches), draw(depths), draw(st.integers(1, 3))
    return dict(x_shape=(N, *hw, D), out_hw=tuple(out_hw), F=tuple(F), K=K, seed=draw(st.integers(0, 2**32 - 1)),
                hyper=dict(stride=tuple(S), pad=tuple(P), dilation=tuple(dil), fit=fit))


@st.composite
def conv_layers(draw, dilations=st.just(1), batches=st.integers(1, 3), widths=16, threads=st.integers(1, 2)):
    """A CONV for the register-blocked kernels and their naive twins: filter 1-5, stride 1-3, a dilation from
    ``dilations``, padding up to the filter's extent less one, 1-40 filters (tails of every tile width),
    outputs 1 to ``widths`` pixels wide (tails of every tile's pixels), float32 or float64, and a number of
    ``threads``; draw its arrays with :func:`conv_arrays`."""
    F, S, dilation = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(dilations)
    extent = (F - 1) * dilation + 1
    pad = draw(st.integers(0, extent - 1))
    H, W = (draw(st.integers(max(1, extent - 2 * pad), widths)) for _ in range(2))
    return dict(x_shape=(draw(batches), H, W, draw(st.integers(1, 9))), F=F, S=S, dilation=dilation, pad=pad,
                K=draw(st.integers(1, 40)), dtype=draw(st.sampled_from([np.float32, np.float64])),
                bias=draw(st.booleans()), relu=draw(st.booleans()), threads=draw(threads),
                seed=draw(st.integers(0, 2**32 - 1)))


def conv_arrays(setting: dict) -> tuple:
    """``(x, w, b)`` of a :func:`conv_layers` setting, standard normal in its dtype."""
    rng = np.random.default_rng(setting["seed"])
    dtype = setting["dtype"]
    x = rng.standard_normal(setting["x_shape"]).astype(dtype)
    w = rng.standard_normal((setting["F"], setting["F"], x.shape[3], setting["K"])).astype(dtype)
    return x, w, rng.standard_normal(setting["K"]).astype(dtype)


def assert_fast_equals_naive(fast, naive, arrays, hyper, rng, names=("dx", "dw", "db"), atol=1e-10):
    """A fast kernel pair ``(forward, backward)`` equals its naive twin: the output and every gradient.

    Returns the output. A plain function, not a fixture, so hypothesis tests can call it.
    """
    out_fast, cache_fast = fast[0](*arrays, **hyper)
    out_naive, cache_naive = naive[0](*arrays, **hyper)
    assert out_fast.shape == out_naive.shape
    np.testing.assert_allclose(out_fast, out_naive, rtol=0, atol=atol)
    dout = rng.standard_normal(out_naive.shape)
    for got, expected, name in zip(fast[1](dout, cache_fast), naive[1](dout, cache_naive), names):
        assert got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol, err_msg=name)
    return out_fast


@contextmanager
def numba_off():
    """The NumPy expressions instead of the compiled kernels (``volnet.ops.jit.ENABLED`` off), for the duration:
    the twin that a compiled kernel is held to. A context manager: hypothesis tests take no fixtures."""
    before = jit.ENABLED
    jit.ENABLED = False
    try:
        yield
    finally:
        jit.ENABLED = before


@contextmanager
def winograd_enabled(enabled: bool):
    """Let 3x3 stride-1 CONV layers take Winograd (where Numba is installed) or not, for the duration;
    enabled, on batches of any number of images and tiles (``winograd.MIN_IMAGES`` and ``MIN_TILES`` = 1), so
    that small test shapes take it.

    A context manager rather than monkeypatch, which hypothesis tests cannot take.
    """
    before = winograd.ENABLED, winograd.MIN_TILES, winograd.MIN_IMAGES
    winograd.ENABLED = enabled and before[0]
    winograd.MIN_TILES = 1 if enabled else before[1]
    winograd.MIN_IMAGES = 1 if enabled else before[2]
    try:
        yield
    finally:
        winograd.ENABLED, winograd.MIN_TILES, winograd.MIN_IMAGES = before


def torch_conv(torch, nchw, x, w, b, dout, **hyper):
    """Forward and the three gradients of torch's conv2d, in volnet's layout."""
    xt, wt = nchw.to_torch(x, requires_grad=True), nchw.filters_to_torch(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    out = torch.nn.functional.conv2d(xt, wt, bt, **hyper)
    out.backward(nchw.to_torch(dout))
    return nchw.from_torch(out), nchw.from_torch(xt.grad), nchw.filters_from_torch(wt.grad), bt.grad.numpy()
