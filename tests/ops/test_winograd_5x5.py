"""Winograd F(4x4, 5x5) and its weight gradient F(5x5, 4x4): transforms exact by construction, equal to the
naive loops on random shapes, gradient-checked through conv's kernels, equal to PyTorch, and chosen by conv
only where it applies."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import torch_conv

from volnet.ops import conv_workspace, direct, direct_weights, winograd_5x5
from volnet.ops.conv import conv_backward, conv_backward_naive, conv_forward, conv_forward_naive
from volnet.ops.window import geometry, pad_spatial


@pytest.fixture
def every_layer_takes_it(monkeypatch):
    """Small test layers take the general Winograd too: no depth, width or tile minimum (and no direct
    kernels, which the plan puts first for first layers)."""
    for name in ("MIN_DEPTH", "MIN_MULTIPLY", "MIN_TILES"):
        monkeypatch.setattr(winograd_5x5, name, 1)
    monkeypatch.setattr(direct, "applies", lambda *args: False)
    monkeypatch.setattr(direct_weights, "applies_to_weight_gradient", lambda *args: False)


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (2, 5), (4, 5), (5, 2), (5, 4)])
@given(seed=st.integers(0, 2**32 - 1))
def test_transforms_compute_the_1d_correlation(m, r, seed):
    AT, G, BT = winograd_5x5.transforms(m, r)
    rng = np.random.default_rng(seed)
    d, g = rng.standard_normal(m + r - 1), rng.standard_normal(r)
    direct = np.array([d[i: i + r] @ g for i in range(m)])
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), direct, rtol=0, atol=1e-11)


@st.composite
def layer_settings(draw):
    """A 5x5 stride-1 layer of any depth (the kernels themselves have no minimum), odd and even outputs."""
    pad = draw(st.integers(0, 3))
    H, W = (draw(st.integers(max(1, 5 - 2 * pad), 11)) for _ in range(2))
    return dict(x_shape=(draw(st.integers(1, 3)), H, W, draw(st.integers(1, 6))), pad=pad,
                K=draw(st.integers(1, 5)), relu=draw(st.booleans()), block=draw(st.integers(1, 3)),
                workers=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=40, deadline=None)
@given(setting=layer_settings())
def test_correlate_and_weight_gradient_equal_naive(setting):
    rng = np.random.default_rng(setting["seed"])
    x = rng.standard_normal(setting["x_shape"])
    w = rng.standard_normal((5, 5, x.shape[3], setting["K"]))
    b = rng.standard_normal(setting["K"])
    expected, cache = conv_forward_naive(x, w, b, pad=setting["pad"])
    xp = pad_spatial(x, cache.geometry.pads)
    split = dict(images_per_block=setting["block"], workers=setting["workers"])

    out = winograd_5x5.correlate(xp, w, b, relu=setting["relu"], **split)
    np.testing.assert_allclose(out, np.maximum(expected, 0) if setting["relu"] else expected, rtol=0, atol=1e-9)
    dout = rng.standard_normal(expected.shape)
    _, dw_naive, db_naive = conv_backward_naive(dout, cache)
    dw, db = winograd_5x5.weight_gradient(xp, dout, 5, **split)
    np.testing.assert_allclose(dw, dw_naive, rtol=0, atol=1e-9)
    np.testing.assert_allclose(db, db_naive, rtol=0, atol=1e-10)


def test_conv_takes_it_forward_and_backward_and_its_gradients_check(rng, check_kernel_grad, monkeypatch,
                                                                     every_layer_takes_it):
    calls = []
    for name in ("correlate", "weight_gradient"):
        real = getattr(winograd_5x5, name)
        monkeypatch.setattr(winograd_5x5, name, lambda *a, real=real, name=name, **k: calls.append(name)
                            or real(*a, **k))
    x, w, b = rng.standard_normal((2, 6, 5, 3)), rng.standard_normal((5, 5, 3, 4)), rng.standard_normal(4)
    check_kernel_grad(conv_forward, conv_backward, (x, w, b), dict(pad=2), rng)
    # the forward pass, the input gradient (dout with the flipped filters: 5x5 stride 1 again) and dw
    assert calls.count("correlate") >= 2 and "weight_gradient" in calls


def test_a_real_layer_equals_pytorch_in_float32(rng, torch, nchw):
    # 64 -> 64 channels on a batch of 4 12x12 images: 4 x 3 x 3 tiles; every pass takes the general Winograd
    x = rng.standard_normal((4, 12, 12, 64)).astype(np.float32)
    w = (rng.standard_normal((5, 5, 64, 64)) / 40).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    assert winograd_5x5.applies(geometry(x.shape, 5, 1, 2), 64, 64, np.float32)
    out, cache = conv_forward(x, w, b, pad=2)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ours = (out, *conv_backward(dout, cache))
    theirs = torch_conv(torch, nchw, x, w, b, dout, padding=2)
    for a, t, name in zip(ours, theirs, ("out", "dx", "dw", "db")):
        assert a.dtype == np.float32, name
        scale = np.abs(t).max()
        np.testing.assert_allclose(a / scale, t / scale, rtol=0, atol=5e-5, err_msg=name)


@pytest.mark.parametrize("F, stride, depth, filters, images, dtype, expected", [
    (5, 1, 64, 64, 8, np.float32, True),
    (5, 1, 64, 192, 8, np.float64, True),
    (3, 1, 64, 64, 8, np.float32, False),  # 3x3: volnet.ops.winograd's
    (5, 2, 64, 64, 8, np.float32, False),
    (5, 1, 7, 1024, 8, np.float32, False),  # too shallow
    (5, 1, 16, 32, 8, np.float32, True),  # LeNet's second CONV
    (5, 1, 8, 16, 8, np.float32, False),  # multiplies too thin for BLAS
    (5, 1, 64, 64, 1, np.float32, False),  # 9 tiles: too few to share the filter transform
    (5, 1, 64, 64, 8, np.float16, False),
])
def test_it_applies_to_deep_5x5_stride_1_float_layers_with_enough_tiles(F, stride, depth, filters, images, dtype,
                                                                         expected):
    g = geometry((images, 12, 12, depth), F, stride, F // 2, fit="crop")
    assert winograd_5x5.applies(g, depth, filters, dtype) is expected


def test_the_memory_estimate_counts_its_blocks(monkeypatch):
    # one thread: a block of images (at least MIN_BLOCK_TILES tiles) and the transformed filters
    g = geometry((64, 16, 16, 64), 5, 1, 2)
    per_image = winograd_5x5.bytes_per_image((16, 16), 64, 192, 5, 4)
    images = -(-winograd_5x5.MIN_BLOCK_TILES // 16)  # 16 tiles of 4x4 per 16x16 image
    n = winograd_5x5.OUTPUT_TILE + 4
    assert conv_workspace.conv_workspace(g, 192, 4, cores=1).transient == images * per_image + n * n * 64 * 192 * 4
