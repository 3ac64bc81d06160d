"""Winograd F(2x2, 3x3) and F(4x4, 3x3): equal to the naive loops on random shapes, gradient-checked, equal to PyTorch,
and chosen by conv only where it applies (with im2col, the same numbers, where Numba is absent or off)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import torch_conv, winograd_enabled

from volnet.ops import conv_rows, winograd, winograd_tiles
from volnet.ops.conv import (conv_backward, conv_backward_input_flipped, conv_backward_naive, conv_forward,
                             conv_forward_naive)
from volnet.ops.window import geometry, pad_spatial

needs_numba = pytest.mark.skipif(not winograd.ENABLED, reason="Numba is not installed (or VOLNET_NUMBA=0)")


@st.composite
def winograd_settings(draw):
    """A 3x3 stride-1 layer deep enough for Winograd, with odd and even output sizes (1 included).

    K is sometimes deep enough too, so that dx (a correlation over K channels) takes Winograd.
    """
    pad = draw(st.integers(0, 2))
    H, W = (draw(st.integers(max(1, 3 - 2 * pad), 13)) for _ in range(2))  # both tilings
    return dict(x_shape=(draw(st.integers(1, 3)), H, W, draw(st.integers(winograd.MIN_DEPTH, 12))), pad=pad,
                K=draw(st.sampled_from([1, 3, 5, winograd.MIN_DEPTH, 10])), relu=draw(st.booleans()),
                block=draw(st.integers(1, 3)), workers=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**32 - 1)),
                by_points=draw(st.booleans()))


@pytest.mark.slow
@needs_numba
@settings(max_examples=50, deadline=None)
@given(setting=winograd_settings())
def test_winograd_equals_naive(setting):
    rng = np.random.default_rng(setting["seed"])
    x = rng.standard_normal(setting["x_shape"])
    w = rng.standard_normal((3, 3, x.shape[3], setting["K"]))
    b = rng.standard_normal(setting["K"])
    expected, cache = conv_forward_naive(x, w, b, pad=setting["pad"])
    xp = pad_spatial(x, cache.geometry.pads)

    split = dict(images_per_block=setting["block"], workers=setting["workers"])
    out = winograd.correlate(xp, w, b, relu=setting["relu"], **split)
    np.testing.assert_allclose(out, np.maximum(expected, 0) if setting["relu"] else expected, rtol=0, atol=1e-10)

    dout = rng.standard_normal(expected.shape)
    dx_naive, dw_naive, db_naive = conv_backward_naive(dout, cache)
    before = winograd.POINT_SPLIT_BYTES
    winograd.POINT_SPLIT_BYTES = 0 if setting["by_points"] else before  # dw's split by point where workers > 1
    try:
        dw, db = winograd.weight_gradient(xp, dout, **split)
    finally:
        winograd.POINT_SPLIT_BYTES = before
    np.testing.assert_allclose(dw, dw_naive, rtol=0, atol=1e-10)
    np.testing.assert_allclose(db, db_naive, rtol=0, atol=1e-10)
    # dx: dout correlated with the flipped filters, by Winograd too where K >= MIN_DEPTH
    np.testing.assert_allclose(conv_backward_input_flipped(dout, w, cache.geometry), dx_naive, rtol=0, atol=1e-10)


def _winograd_kernels(pad):
    """A kernel pair made of the Winograd pieces alone: forward, dx (flipped filters), dw, db."""
    def forward(x, w, b):
        g = geometry(x.shape, 3, 1, pad)
        return winograd.correlate(pad_spatial(x, g.pads), w, b), (x, w, g)

    def backward(dout, cache):
        x, w, g = cache
        return conv_backward_input_flipped(dout, w, g), *winograd.weight_gradient(pad_spatial(x, g.pads), dout)

    return forward, backward


@needs_numba
@pytest.mark.parametrize("x_shape, K, pad", [((2, 5, 7, 8), 8, 1), ((1, 4, 3, 9), 10, 2), ((2, 6, 6, 8), 3, 0)])
def test_winograd_gradients(x_shape, K, pad, rng, check_kernel_grad, monkeypatch):
    monkeypatch.setattr(winograd, "MIN_TILES", 1)
    monkeypatch.setattr(winograd, "MIN_IMAGES", 1)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((3, 3, x_shape[3], K))
    b = rng.standard_normal(K)
    g = geometry(x_shape, 3, 1, pad)
    assert winograd.applies(g, x_shape[3], x.dtype)
    check_kernel_grad(*_winograd_kernels(pad), (x, w, b), {}, rng)


@needs_numba
def test_conv_backward_takes_winograd_for_dw_and_its_gradients_check(rng, check_kernel_grad, monkeypatch):
    x = rng.standard_normal((2, 5, 6, 8))
    w, b = rng.standard_normal((3, 3, 8, 9)), rng.standard_normal(9)
    calls = []
    monkeypatch.setattr(winograd, "THIN_MULTIPLY", 1)  # dw takes Winograd however many cores there are
    monkeypatch.setattr(winograd, "MIN_TILES", 1)  # and however few tiles the batch has
    real = winograd.weight_gradient
    monkeypatch.setattr(winograd, "weight_gradient", lambda *a, **k: calls.append(1) or real(*a, **k))
    check_kernel_grad(conv_forward, conv_backward, (x, w, b), dict(pad=1), rng)
    assert calls


@needs_numba
@pytest.mark.parametrize("dtype, tol", [(np.float32, 2e-4), (np.float64, 1e-10)], ids=["float32", "float64"])
def test_winograd_layer_matches_torch(dtype, tol, rng, torch, nchw):
    # 64 -> 64 filters: forward, dx and dw all take Winograd.
    x = rng.standard_normal((32, 8, 7, 64)).astype(dtype)  # 128 tiles
    w = (rng.standard_normal((3, 3, 64, 64)) / 24).astype(dtype)
    b = rng.standard_normal(64).astype(dtype)
    g = geometry(x.shape, 3, 1, 1)
    assert winograd.applies_to_weight_gradient(g, 64, 64, dtype, workers=1)
    out, cache = conv_forward(x, w, b, pad=1)
    dout = rng.standard_normal(out.shape).astype(dtype)
    ours = (out, *conv_backward(dout, cache))
    theirs = torch_conv(torch, nchw, x, w, b, dout, padding=1)
    for a, t, name in zip(ours, theirs, ("out", "dx", "dw", "db")):
        assert a.dtype == dtype, name
        scale = np.abs(t).max()
        np.testing.assert_allclose(a / scale, t / scale, rtol=0, atol=tol, err_msg=name)


@pytest.mark.parametrize("F, stride, dilation, depth, dtype, expected", [
    (3, 1, 1, 8, np.float32, True),
    (3, 1, 1, 64, np.float64, True),
    (3, 1, 1, 7, np.float32, False),  # too shallow: BLAS gets thin multiplies
    (3, 2, 1, 16, np.float32, False),
    (3, 1, 2, 16, np.float32, False),
    (5, 1, 1, 16, np.float32, False),
    (3, 1, 1, 16, np.float16, False),
    (3, 1, 1, 16, np.int64, False),
])
def test_winograd_applies_only_to_3x3_stride1_undilated_float_layers(F, stride, dilation, depth, dtype, expected):
    g = geometry((16, 9, 9, depth), F, stride, 1, dilation, fit="crop")  # 16 x 3 x 3 tiles
    assert winograd.applies(g, depth, dtype) is (expected and winograd.ENABLED)


@needs_numba
@pytest.mark.parametrize("images, size, expected", [(1, 32, False), (2, 8, False), (8, 8, True), (32, 4, True),
                                                    (16, 4, False), (2, 24, True), (2, 14, False)])
def test_winograd_waits_for_two_images_and_enough_tiles_to_share_the_filter_transform(images, size, expected):
    g = geometry((images, size, size, 64), 3, 1, 1)
    assert winograd.tile_count(g) == images * (-(-size // winograd.tiling((size, size), images).tile)) ** 2
    assert winograd.applies(g, 64, np.float32) is expected


@needs_numba
def test_a_conv_with_few_tiles_takes_im2col_with_the_same_numbers(rng, monkeypatch):
    # ResNet's last stage at batch 1: 4x4x512, one image of 4 tiles, too few for Winograd
    x, w, b = rng.standard_normal((1, 4, 4, 16)), rng.standard_normal((3, 3, 16, 16)), rng.standard_normal(16)
    calls = []
    monkeypatch.setattr(winograd, "correlate", lambda *a, **k: calls.append(1))
    out, cache = conv_forward(x, w, b, pad=1)
    expected, _ = conv_forward_naive(x, w, b, pad=1)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10)
    assert not calls


@pytest.mark.parametrize("depth", [winograd.MIN_DEPTH, 16])
@pytest.mark.parametrize("use_winograd", [True, False], ids=["winograd", "im2col"])
def test_conv_gives_the_same_numbers_with_or_without_winograd(depth, use_winograd, rng):
    x, w, b = rng.standard_normal((2, 7, 6, depth)), rng.standard_normal((3, 3, depth, 5)), rng.standard_normal(5)
    out_naive, cache_naive = conv_forward_naive(x, w, b, pad=1)
    dout = rng.standard_normal(out_naive.shape)
    with winograd_enabled(use_winograd):
        out, cache = conv_forward(x, w, b, pad=1, relu=True)
        grads = conv_backward(dout, cache)
    np.testing.assert_allclose(out, np.maximum(out_naive, 0), rtol=0, atol=1e-10)
    for got, expected in zip(grads, conv_backward_naive(dout, cache_naive)):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_volnet_numba_0_turns_winograd_off():
    code = ("import numpy as np; from volnet.ops import winograd, conv_forward; assert not winograd.ENABLED; "
            "x = np.ones((1, 4, 4, 8)); out, _ = conv_forward(x, np.ones((3, 3, 8, 2)), np.zeros(2), pad=1); "
            "print(out[0, 1, 1, 0], out[0, 0, 0, 0])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "VOLNET_NUMBA": "0"}, check=True)
    assert result.stdout.split() == ["72.0", "32.0"]  # 9 taps x 8 channels inside, 4 x 8 in a corner


@needs_numba
def test_blocks_of_images_follow_the_block_size(monkeypatch, rng):
    # conv sizes Winograd's blocks like im2col's: about BLOCK_BYTES of transformed tiles per block
    seen = []
    real = winograd.correlate
    monkeypatch.setattr(winograd, "correlate", lambda *a, **k: seen.append(a[4]) or real(*a, **k))
    x = rng.standard_normal((10, 8, 8, 8))
    per_image = winograd.bytes_per_image((8, 8), 10, 8, 4, 8)
    monkeypatch.setattr(conv_rows, "BLOCK_BYTES", 3 * per_image)
    conv_forward(x, rng.standard_normal((3, 3, 8, 4)), np.zeros(4), pad=1)
    assert seen == [3]


@pytest.mark.parametrize("tiling", [winograd_tiles.F2, winograd_tiles.F4], ids=["F2", "F4"])
def test_the_transform_matrices_compute_a_correlation_with_three_taps(tiling, rng):
    # Winograd's identity in one dimension: A^T [(G g) * (B^T d)] is the m outputs of d (m + 2) correlated with g
    d, g = rng.standard_normal(tiling.span), rng.standard_normal(3)
    expected = [d[i:i + 3] @ g for i in range(tiling.tile)]
    np.testing.assert_allclose(tiling.A_T @ ((tiling.G @ g) * (tiling.B_T @ d)), expected, rtol=0, atol=1e-12)
    assert np.kron(tiling.G, tiling.G).shape == (tiling.points, 9)


@pytest.mark.parametrize("out_hw, images, tile", [((4, 4), 200, 2), ((7, 30), 64, 2), ((8, 8), 32, 4),
                                                   ((8, 8), 16, 2), ((32, 9), 8, 4), ((32, 32), 1, 2)])
def test_outputs_from_eight_on_each_side_take_four_by_four_tiles_in_batches_with_enough_of_them(out_hw, images,
                                                                                                 tile):
    assert winograd.tiling(out_hw, images).tile == tile


def test_filter_transform_and_its_gradient_split_over_threads_give_the_same_numbers(rng, monkeypatch):
    """Within a network pass the filter transform and dw's transform back split the weights' columns over
    the cores: the same numbers as one multiply."""
    from volnet.ops import threads

    monkeypatch.setattr(threads, "MIN_PART_MULTIPLY_ADDS", 1)
    w = rng.standard_normal((3, 3, 24, 40)).astype(np.float32)
    t = winograd.tiling((8, 8), 64)
    serial = winograd.filter_transform(w, np.float32, t)
    split = winograd.filter_transform(w, np.float32, t, threads.Workers(2, blas_held=True))
    np.testing.assert_allclose(split, serial, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(serial, np.einsum("pt,tdk->pdk", np.kron(t.G, t.G), w.reshape(9, 24, 40)), rtol=1e-5,
                               atol=1e-5)
    back = winograd._filter_gradient(t, serial, threads.Workers(2, blas_held=True))
    np.testing.assert_allclose(back, winograd._filter_gradient(t, serial, threads.SERIAL), rtol=1e-6, atol=1e-6)


@needs_numba
@pytest.mark.parametrize("out_hw, images", [((4, 4), 2), ((9, 8), 8)])  # F(2x2, 3x3) and F(4x4, 3x3)
def test_an_input_gradient_folds_the_flip_into_the_filter_transform(out_hw, images, rng, monkeypatch):
    """``flipped=True`` correlates with the weights flipped in space and transposed, without a flipped copy:
    the numbers of the flipped copy, and the input gradient's plan takes it (where dout is deep enough)."""
    from volnet.ops import conv, flipped

    monkeypatch.setattr(winograd, "MIN_TILES", 1)
    D, K = 9, 11  # the layer's: dx correlates dout (K deep) with filters (3, 3, K, D)
    w = rng.standard_normal((3, 3, D, K))
    dp = rng.standard_normal((images, out_hw[0] + 2, out_hw[1] + 2, K))
    expected = winograd.correlate(dp, flipped.flipped_filters(w))
    np.testing.assert_allclose(winograd.correlate(dp, w, flipped=True, workers=2), expected, rtol=0, atol=1e-10)
    x = rng.standard_normal((images, *out_hw, D))
    _, cache = conv_forward(x, w, np.zeros(K), pad=1)
    dout = rng.standard_normal((images, *out_hw, K))
    copies = []
    monkeypatch.setattr(conv, "flipped_filters", lambda *a: copies.append(a) or flipped.flipped_filters(*a))
    dx = conv_backward_input_flipped(dout, w, cache.geometry)
    assert copies == []  # Winograd, flip folded in
    np.testing.assert_allclose(dx, conv_backward_naive(dout, cache)[0], rtol=0, atol=1e-10)
