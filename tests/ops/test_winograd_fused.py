"""The compiled Winograd F(4x4, 5x5) (volnet.ops.winograd_fused): equal to the naive loops on random shapes (tile
tails in both directions, padded filters, pooled, flipped filters, the batch split), gradient-checked through
conv's plan, equal to PyTorch, planned for LeNet's layers, and its memory estimate held to what it allocates."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import torch_conv

from volnet.ops import conv_plan, conv_workspace, direct, threads, winograd_5x5, winograd_fused
from volnet.ops.conv import (conv_backward, conv_backward_input_flipped, conv_backward_naive, conv_forward,
                             conv_forward_naive, flipped_geometry)
from volnet.ops.flipped import flipped_filters
from volnet.ops.jit import ENABLED
from volnet.ops.window import geometry, pad_spatial

pytestmark = pytest.mark.skipif(not ENABLED, reason="the compiled Winograd needs Numba")


@pytest.fixture
def planned_on_avx512(monkeypatch):
    """The plan as on the AVX-512 hosts it was measured on, whatever this host's instruction set."""
    monkeypatch.setattr(direct, "isa", lambda: "avx512")


def max_pool(a, pool):
    N, H, W, K = a.shape
    return a.reshape(N, H // pool, pool, W // pool, pool, K).max(axis=(2, 4))


@st.composite
def layer_settings(draw):
    """A 5x5 stride-1 layer 16 or 32 channels deep: outputs that are and are not whole 4x4 tiles, filter counts
    that are and are not whole register tiles, a 2x2 max pool."""
    pad, pool = draw(st.integers(0, 3)), draw(st.sampled_from([1, 2]))
    out_hw = [pool * draw(st.integers(1, 11 // pool)) for _ in range(2)]  # a pool tiles the output
    H, W = (size + 4 - 2 * pad for size in out_hw)
    assume(H >= 1 and W >= 1)
    return dict(x_shape=(draw(st.integers(1, 4)), H, W, draw(st.sampled_from([16, 32]))), pad=pad,
                K=draw(st.integers(1, 40)), relu=draw(st.booleans()), bias=draw(st.booleans()), pool=pool,
                workers=draw(st.integers(1, 3)), dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**32 - 1)))


def tolerance(dtype, expected):
    return (2e-5 if dtype == np.float32 else 1e-12) * max(1.0, float(np.abs(expected).max()))


@settings(max_examples=40, deadline=None)
@given(setting=layer_settings())
def test_correlate_equals_naive(setting):
    rng = np.random.default_rng(setting["seed"])
    dtype, K = setting["dtype"], setting["K"]
    x = rng.standard_normal(setting["x_shape"]).astype(dtype)
    w = (rng.standard_normal((5, 5, x.shape[3], K)) / 10).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if setting["bias"] else None
    expected, cache = conv_forward_naive(x, w, np.zeros(K) if b is None else b, pad=setting["pad"])
    if setting["relu"]:
        expected = np.maximum(expected, 0)
    if setting["pool"] > 1:
        expected = max_pool(expected, setting["pool"])
    g = cache.geometry
    correlate = winograd_fused.correlator(g, K, dtype, setting["relu"], setting["workers"], pool=setting["pool"])
    with threads.network_pass(len(x)):
        out = correlate(pad_spatial(x, g.pads), w, b, None)
    assert out.dtype == dtype and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(dtype, expected))


@settings(max_examples=20, deadline=None)
@given(setting=layer_settings())
def test_flipped_filters_equal_a_flipped_copy(setting):
    """``flipped=True`` correlates with w flipped in space, its depth and filters swapped: an input gradient's
    filters, as flipped_filters copies them."""
    rng = np.random.default_rng(setting["seed"])
    dtype, D = setting["dtype"], setting["x_shape"][3]
    x = rng.standard_normal(setting["x_shape"]).astype(dtype)
    w = rng.standard_normal((5, 5, setting["K"], D)).astype(dtype)  # (F, F, K, D): dx's filters of a D -> K layer
    g = geometry(x.shape, 5, 1, setting["pad"])
    xp = pad_spatial(x, g.pads)
    expected = direct.correlate(xp, flipped_filters(w), g) if direct.measured(g, dtype, "lenet") else (
        conv_forward_naive(x, flipped_filters(w), np.zeros(setting["K"]), pad=setting["pad"])[0])
    out = winograd_fused.correlator(g, setting["K"], dtype, flipped=True)(xp, w, None, None)
    np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance(dtype, expected))


def test_filter_transform_is_g_times_the_filter_times_g_transposed(rng):
    _, G, _ = winograd_5x5.transforms(4, 5)
    w = rng.standard_normal((5, 5, 16, 20))
    U = winograd_fused.filter_transform(w, np.float64)
    Kp = winograd_fused.padded_filters(20)
    assert U.shape == (64, 16, Kp)
    expected = np.einsum("au,uvdk,bv->abdk", G, w, G).reshape(64, 16, 20)
    np.testing.assert_allclose(U[..., :20], expected, rtol=1e-12, atol=1e-12)
    assert not U[..., 20:].any()


def test_keeps_nan():
    """A diverging network shows NaN, not the ReLU's floor: a NaN input reaches the outputs of its tile."""
    x = np.ones((1, 8, 8, 16), dtype=np.float32)
    x[0, 1, 1, 3] = np.nan
    w = np.ones((5, 5, 16, 16), dtype=np.float32)
    g = geometry(x.shape, 5, 1, 2)
    out = winograd_fused.correlator(g, 16, np.float32, relu=True, pool=2)(pad_spatial(x, g.pads), w, None, None)
    assert np.isnan(out[0, 0, 0]).all()


def test_conv_plans_it_for_lenet_and_its_gradients_check(planned_on_avx512, rng, check_kernel_grad, monkeypatch):
    """Through conv's plan: the forward and the input gradient (dout with the flipped filters, the flip folded
    into the filter transform) take it, and the gradients check numerically in float64."""
    calls = []
    real = winograd_fused.correlator
    monkeypatch.setattr(winograd_fused, "correlator", lambda *a, **k: calls.append(
        a[7] if len(a) > 7 else k.get("flipped", False)) or real(*a, **k))
    x, w, b = rng.standard_normal((2, 7, 6, 16)), rng.standard_normal((5, 5, 16, 16)) / 10, rng.standard_normal(16)
    g = geometry(x.shape, 5, 1, 2)
    assert conv_plan.plan_conv(g, 16, np.float64).forward == "winograd_fused"
    assert conv_plan.plan_conv(flipped_geometry(g, 16), 16, np.float64).forward == "winograd_fused"
    check_kernel_grad(conv_forward, conv_backward, (x, w, b), dict(pad=2), rng)
    assert False in calls and True in calls  # the forward's correlation, and the input gradient's


def test_input_gradient_equals_naive(planned_on_avx512, rng):
    x = rng.standard_normal((3, 10, 9, 16)).astype(np.float32)
    w = rng.standard_normal((5, 5, 16, 32)).astype(np.float32)
    _, cache = conv_forward_naive(x, w, np.zeros(32), pad=2)
    dout = rng.standard_normal((3, 10, 9, 32)).astype(np.float32)
    dx = conv_backward_input_flipped(dout, w, cache.geometry)
    expected = conv_backward_naive(dout, cache)[0]
    np.testing.assert_allclose(dx, expected, rtol=0, atol=tolerance(np.float32, expected))


def test_a_lenet_layer_equals_pytorch_in_float32(planned_on_avx512, rng, torch, nchw):
    x = rng.standard_normal((8, 14, 14, 16)).astype(np.float32)
    w = (rng.standard_normal((5, 5, 16, 32)) / 20).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    out, cache = conv_forward(x, w, b, pad=2)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ours = (out, *conv_backward(dout, cache))
    theirs = torch_conv(torch, nchw, x, w, b, dout, padding=2)
    for a, t, name in zip(ours, theirs, ("out", "dx", "dw", "db")):
        scale = np.abs(t).max()
        np.testing.assert_allclose(a / scale, t / scale, rtol=0, atol=5e-5, err_msg=name)


@pytest.mark.parametrize("F, stride, depth, filters, dtype, expected", [
    (5, 1, 16, 32, np.float32, True),  # LeNet's second CONV
    (5, 1, 32, 16, np.float32, True),  # its input gradient
    (5, 1, 16, 32, np.float64, True),
    (5, 1, 8, 16, np.float32, False),  # not whole blocks of 16 channels
    (5, 1, 64, 64, np.float32, False),  # deeper than LeNet's: BLAS's Winograd
    (3, 1, 16, 32, np.float32, False),
    (5, 2, 16, 32, np.float32, False),
    (5, 1, 16, 32, np.float16, False),
])
def test_it_applies_to_lenet_sized_5x5_layers(planned_on_avx512, F, stride, depth, filters, dtype, expected):
    g = geometry((8, 14, 14, depth), F, stride, F // 2, fit="crop")
    assert winograd_fused.applies(g, depth, filters, dtype) is expected


@pytest.mark.parametrize("K, pool", [(32, 1), (20, 1), (32, 2)])
def test_forward_workspace_estimate_matches_tracemalloc(planned_on_avx512, K, pool, traced_peak):
    from volnet.ops.conv import forward_step

    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 14, 14, 16)).astype(np.float32)
    w = rng.standard_normal((5, 5, 16, K)).astype(np.float32)
    b = np.zeros(K, np.float32)
    g = geometry(x.shape, 5, 1, 2)
    workers = threads.Workers(2, blas_held=True)
    step = forward_step(x.shape, x.dtype, w.shape, w.dtype, b.shape, 1, 2, 1, None, None, True, False, workers, pool)
    peak = traced_peak(lambda: step(x, w, b, None))
    estimate = conv_workspace.conv_workspace(g, K, 4, cores=2, pool=pool)
    assert estimate.pooled is (pool > 1)
    expected = sum(size for size, _ in estimate.private) + estimate.out + estimate.transient
    assert 0.8 <= expected / peak <= 1.25, (estimate, peak)


def test_input_gradient_workspace_estimate_matches_tracemalloc(planned_on_avx512, traced_peak):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 14, 14, 16)).astype(np.float32)
    w = rng.standard_normal((5, 5, 16, 32)).astype(np.float32)
    _, cache = conv_forward(x, w, np.zeros(32, np.float32), pad=2)
    dout = rng.standard_normal((16, 14, 14, 32)).astype(np.float32)
    workers = threads.Workers(2, blas_held=True)
    peak = traced_peak(lambda: conv_backward_input_flipped(dout, w, cache.geometry, workers=workers))
    estimate = conv_workspace.conv_backward_workspace(cache.geometry, 32, 4, cores=2)  # its dx phase the largest
    assert 0.8 <= estimate.extra / peak <= 1.25, (estimate, peak)
