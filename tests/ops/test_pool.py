"""POOL kernels (max, average, L2-norm): hand-computed values, switches, fast == naive, PyTorch."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.ops import direct, pool_backward, pool_backward_naive, pool_forward, pool_forward_naive, pool_kernels
from volnet.shapes import ShapeError

MODES = ("max", "avg", "l2")
PAIRS = {"naive": (pool_forward_naive, pool_backward_naive), "fast": (pool_forward, pool_backward)}


def distinct_values(rng, shape):
    """Random values at least 0.01 apart: no ties, and a 1e-6 nudge never changes which one is the max."""
    size = math.prod(shape)
    return (rng.permutation(size) * 0.01 - size * 0.005).reshape(shape) + rng.uniform(0, 1e-3, shape)


# ---------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------

SLICE = np.array([[1.0, 1, 2, 4],
                  [5, 6, 7, 8],
                  [3, 2, 1, 0],
                  [1, 2, 3, 4]])


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_f2_s2_on_a_4x4_slice(kind):
    forward, _ = PAIRS[kind]
    # Two depth slices, pooled independently: the second is the negated first.
    x = np.stack([SLICE, -SLICE], axis=-1)[None]
    expected = {
        "max": [[[6, -1], [8, -2]], [[3, -1], [4, 0]]],
        "avg": [[[13 / 4, -13 / 4], [21 / 4, -21 / 4]], [[2, -2], [2, -2]]],
        "l2": [[[math.sqrt(63)] * 2, [math.sqrt(133)] * 2], [[math.sqrt(18)] * 2, [math.sqrt(26)] * 2]],
    }
    for mode, values in expected.items():
        out, _ = forward(x, 2, 2, mode)
        assert out.shape == (1, 2, 2, 2)  # depth unchanged, 4x4 -> 2x2
        np.testing.assert_allclose(out[0], values, rtol=1e-12, err_msg=mode)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_overlapping_f3_s2_on_a_5x5_slice(kind):
    forward, _ = PAIRS[kind]
    x = np.arange(25.0).reshape(1, 5, 5, 1)
    out, _ = forward(x, 3, 2, "max")
    np.testing.assert_array_equal(out[0, :, :, 0], [[12, 14], [22, 24]])
    out, _ = forward(x, 3, 2, "avg")
    np.testing.assert_allclose(out[0, :, :, 0], [[6, 8], [16, 18]], rtol=1e-12)
    out, _ = forward(x, 3, 2, "l2")
    X = x[0, :, :, 0]
    expected = [[np.sqrt(np.sum(X[r:r + 3, c:c + 3] ** 2)) for c in (0, 2)] for r in (0, 2)]
    np.testing.assert_allclose(out[0, :, :, 0], expected, rtol=1e-12)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_stride_defaults_to_the_window(kind):
    forward, _ = PAIRS[kind]
    x = np.stack([SLICE, -SLICE], axis=-1)[None]
    for mode in MODES:
        np.testing.assert_array_equal(forward(x, 2, mode=mode)[0], forward(x, 2, 2, mode=mode)[0])


# ---------------------------------------------------------------------------
# Max pooling routes the gradient through the switches
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_max_pool_backward_sends_each_gradient_to_the_argmax_only(kind, rng):
    forward, backward = PAIRS[kind]
    x = distinct_values(rng, (2, 6, 8, 3))
    out, cache = forward(x, 2, 2, "max")
    dout = rng.uniform(1, 2, out.shape)  # nonzero everywhere
    dx = backward(dout, cache)
    assert np.count_nonzero(dx) == out.size  # one input per output neuron
    for n, i, j, d in np.ndindex(out.shape):
        window = x[n, 2 * i: 2 * i + 2, 2 * j: 2 * j + 2, d]
        u, v = np.unravel_index(window.argmax(), window.shape)
        expected = np.zeros((2, 2))
        expected[u, v] = dout[n, i, j, d]
        np.testing.assert_array_equal(dx[n, 2 * i: 2 * i + 2, 2 * j: 2 * j + 2, d], expected)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_overlapping_max_pool_adds_the_gradients_of_shared_winners(kind, rng):
    forward, backward = PAIRS[kind]
    x = distinct_values(rng, (1, 7, 9, 2))
    out, cache = forward(x, 3, 2, "max")
    dout = rng.standard_normal(out.shape)
    expected = np.zeros_like(x)
    for n, i, j, d in np.ndindex(out.shape):
        window = x[n, 2 * i: 2 * i + 3, 2 * j: 2 * j + 3, d]
        u, v = np.unravel_index(window.argmax(), window.shape)
        expected[n, 2 * i + u, 2 * j + v, d] += dout[n, i, j, d]
    np.testing.assert_allclose(backward(dout, cache), expected, rtol=1e-12, atol=1e-12)


def test_max_pool_switches_record_the_winning_tap(rng):
    x = distinct_values(rng, (1, 4, 4, 1))
    _, cache = pool_forward(x, 2, 2, "max")
    for i, j in np.ndindex(2, 2):
        window = x[0, 2 * i: 2 * i + 2, 2 * j: 2 * j + 2, 0]
        assert cache.switches[0, i, j, 0] == window.argmax()  # tap u*F + v


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_ties_go_to_the_first_maximum(kind):
    forward, backward = PAIRS[kind]
    x = np.ones((1, 2, 2, 1))
    out, cache = forward(x, 2, 2, "max")
    dx = backward(np.full(out.shape, 5.0), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[5, 0], [0, 0]])


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_avg_pool_backward_spreads_evenly(kind):
    forward, backward = PAIRS[kind]
    out, cache = forward(np.zeros((1, 4, 4, 1)), 2, 2, "avg")
    dout = np.array([[1.0, 2], [3, 4]]).reshape(1, 2, 2, 1)
    dx = backward(dout, cache)
    np.testing.assert_allclose(dx[0, :, :, 0], np.kron([[1, 2], [3, 4]], np.ones((2, 2))) / 4)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_l2_pool_of_zeros_has_zero_gradient(kind):
    # sqrt is not differentiable at 0; the kernels send no gradient there (not NaN).
    forward, backward = PAIRS[kind]
    out, cache = forward(np.zeros((1, 4, 4, 2)), 2, 2, "l2")
    dx = backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx, 0.0)


# ---------------------------------------------------------------------------
# Gradient checks (float64)
# ---------------------------------------------------------------------------

GRAD_CASES = [
    # (x shape, F, S, fit)
    pytest.param((2, 4, 6, 2), 2, 2, None, id="F2-S2"),
    pytest.param((1, 7, 5, 3), 3, 2, None, id="F3-S2"),
    pytest.param((2, 5, 7, 1), 2, 2, "pad", id="fit-pad"),
    pytest.param((1, 8, 6, 2), 3, 2, "crop", id="fit-crop"),
    pytest.param((1, 6, 7, 2), (2, 3), (2, 1), None, id="rect-window"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind", PAIRS.keys())
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("x_shape, F, S, fit", GRAD_CASES)
def test_pool_gradients(kind, mode, x_shape, F, S, fit, rng, check_grad):
    forward, backward = PAIRS[kind]
    x = distinct_values(rng, x_shape) if mode == "max" else rng.standard_normal(x_shape)
    out, cache = forward(x, F, S, mode, fit=fit)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    check_grad(lambda: float(np.sum(forward(x, F, S, mode, fit=fit)[0] * dout)), x, dx, name=f"{mode} dx")


# ---------------------------------------------------------------------------
# Fast == naive on random settings
# ---------------------------------------------------------------------------


# Depths: a few channels (the compiled forward's one-at-a-time tail alone), and whole tiles of its channel
# block (8 float64 values) with and without a tail.
DEPTHS = [1, 2, 3, 8, 11, 16, 19]


@st.composite
def pool_settings(draw):
    fit = draw(st.sampled_from([None, "pad", "crop"]))
    F, S, hw = [], [], []
    for _ in range(2):
        f, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        extra = draw(st.integers(0, s - 1)) if fit else 0
        out = draw(st.integers(1, 4))
        F.append(f), S.append(s), hw.append((out - 1) * s + f + extra)
    N, D = draw(st.integers(1, 2)), draw(st.sampled_from(DEPTHS))
    return dict(x_shape=(N, *hw, D), F=tuple(F), S=tuple(S), fit=fit, mode=draw(st.sampled_from(MODES)),
                ties=draw(st.booleans()), compiled=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


def _numpy_only(setting, monkeypatch):
    """Without Numba (``compiled`` drawn False) max and average pooling take the tap-by-tap NumPy passes."""
    if not setting["compiled"]:
        monkeypatch.setattr(direct, "ENABLED", False)


@settings(max_examples=60, deadline=None)
@given(setting=pool_settings())
def test_fast_pool_equals_naive(setting):
    rng = np.random.default_rng(setting["seed"])
    shape, F, S, fit, mode = (setting[k] for k in ("x_shape", "F", "S", "fit", "mode"))
    # Small integers make ties common: both versions must pick the same (first) maximum.
    x = rng.integers(-2, 3, shape).astype(float) if setting["ties"] else rng.standard_normal(shape)
    out_naive, cache_naive = pool_forward_naive(x, F, S, mode, fit=fit)
    dout = rng.standard_normal(out_naive.shape)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _numpy_only(setting, monkeypatch)
        out_fast, cache_fast = pool_forward(x, F, S, mode, fit=fit)
        dx_fast = pool_backward(dout, cache_fast)
    assert out_fast.shape == out_naive.shape
    np.testing.assert_allclose(out_fast, out_naive, rtol=0, atol=1e-12)
    if mode == "max":
        np.testing.assert_array_equal(cache_fast.switches, cache_naive.switches)
    dx_naive = pool_backward_naive(dout, cache_naive)
    assert dx_fast.shape == dx_naive.shape == x.shape
    np.testing.assert_allclose(dx_fast, dx_naive, rtol=0, atol=1e-12)
    # inference skips the switches: the same output
    out_inference, _ = pool_forward(x, F, S, mode, fit=fit, switches=False)
    np.testing.assert_array_equal(out_inference, out_fast)


def test_max_pool_without_switches_cannot_run_backward(rng):
    x = rng.standard_normal((1, 4, 4, 2))
    out, cache = pool_forward(x, 2, 2, "max", switches=False)
    with pytest.raises(ValueError, match="no switches.*switches=True"):
        pool_backward(np.ones_like(out), cache)


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------


def torch_pool(torch, nchw, mode, x, F, S, dout, ceil_mode=False):
    xt = nchw.to_torch(x, requires_grad=True)
    functional = torch.nn.functional
    if mode == "max":
        out = functional.max_pool2d(xt, F, S, ceil_mode=ceil_mode)
    elif mode == "avg":
        out = functional.avg_pool2d(xt, F, S, ceil_mode=ceil_mode)
    else:
        out = functional.lp_pool2d(xt, 2, F, S, ceil_mode=ceil_mode)
    out.backward(nchw.to_torch(dout))
    return nchw.from_torch(out), nchw.from_torch(xt.grad)


TORCH_CASES = [
    # (x shape, F, S, fit); torch floors, which is fit="crop" (and equal to None when exact)
    pytest.param((2, 8, 8, 3), 2, 2, None, id="F2-S2"),
    pytest.param((2, 9, 11, 2), 3, 2, None, id="F3-S2"),
    pytest.param((1, 8, 10, 2), 3, 2, "crop", id="F3-S2-crop"),
    pytest.param((1, 7, 9, 2), 2, 2, "crop", id="F2-S2-crop"),
    pytest.param((1, 6, 9, 1), (2, 3), (2, 3), None, id="rect"),
]


@pytest.mark.parametrize("kind", PAIRS.keys())
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("x_shape, F, S, fit", TORCH_CASES)
def test_pool_matches_torch_float32(kind, mode, x_shape, F, S, fit, rng, torch, nchw):
    forward, backward = PAIRS[kind]
    x = distinct_values(rng, x_shape).astype(np.float32)
    out, cache = forward(x, F, S, mode, fit=fit)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = backward(dout, cache)
    out_t, dx_t = torch_pool(torch, nchw, mode, x, F, S, dout)
    assert out.dtype == dx.dtype == np.float32
    assert out.shape == out_t.shape
    np.testing.assert_allclose(out, out_t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dx_t, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_max_pool_fit_pad_matches_torch_ceil_mode(kind, rng, torch, nchw):
    # With S <= F, padding with -inf is torch's ceil_mode for max pooling.
    forward, backward = PAIRS[kind]
    x = distinct_values(rng, (2, 8, 10, 2))
    out, cache = forward(x, 3, 2, "max", fit="pad")
    dout = rng.standard_normal(out.shape)
    out_t, dx_t = torch_pool(torch, nchw, "max", x, 3, 2, dout, ceil_mode=True)
    assert out.shape == out_t.shape == (2, 4, 5, 2)
    np.testing.assert_allclose(out, out_t, rtol=1e-12)
    np.testing.assert_allclose(backward(dout, cache), dx_t, rtol=1e-12)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_max_pool_fit_pad_never_outputs_a_window_of_padding_only(kind, rng):
    forward, _ = PAIRS[kind]
    x = rng.standard_normal((1, 6, 6, 1))
    out, _ = forward(x, 2, 3, "max", fit="pad")  # (6 - 2)/3 is not an integer
    assert np.all(np.isfinite(out))


# ---------------------------------------------------------------------------
# Dtypes and errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", PAIRS.keys())
def test_dtype_is_preserved(kind, mode, dtype, rng):
    forward, backward = PAIRS[kind]
    x = rng.standard_normal((2, 5, 5, 3)).astype(dtype)
    out, cache = forward(x, 2, 2, mode, fit="pad")
    dx = backward(np.ones_like(out), cache)
    assert (out.dtype, dx.dtype) == (dtype, dtype)
    assert (out.shape, dx.shape) == ((2, 3, 3, 3), x.shape)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_unknown_mode_raises(kind):
    forward, _ = PAIRS[kind]
    with pytest.raises(ValueError, match=r"pooling mode must be one of .*'max'.*got 'mean'"):
        forward(np.zeros((1, 4, 4, 1)), 2, 2, "mean")


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_window_that_does_not_tile_raises(kind):
    forward, _ = PAIRS[kind]
    with pytest.raises(ShapeError, match=r"pool1: width: \(W - F\)/S \+ 1 = \(7 - 2\)/2 \+ 1 = 3\.5 .*fit="):
        forward(np.zeros((1, 8, 7, 1)), 2, 2, "max", layer="pool1")


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_window_larger_than_the_input_raises(kind):
    forward, _ = PAIRS[kind]
    with pytest.raises(ShapeError, match=r"does not fit"):
        forward(np.zeros((1, 2, 2, 1)), 3, 1, "avg")


# ---------------------------------------------------------------------------
# Padding (pad=P): -inf for max, zeros for average and L2
# ---------------------------------------------------------------------------

PAD_TORCH_CASES = [
    # (x shape, F, S, P): F=3, S=1, P=1 keeps the size (GoogLeNet's inception module)
    pytest.param((2, 6, 7, 3), 3, 1, 1, id="F3-S1-P1"),
    pytest.param((1, 7, 9, 2), 3, 2, 1, id="F3-S2-P1"),
    pytest.param((2, 6, 8, 2), 2, 2, 1, id="F2-S2-P1"),
    pytest.param((1, 8, 6, 1), (3, 2), (1, 2), (1, 0), id="rect"),
]


@pytest.mark.parametrize("kind", PAIRS.keys())
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("x_shape, F, S, P", PAD_TORCH_CASES)
def test_padded_pool_matches_torch(kind, mode, x_shape, F, S, P, rng, torch, nchw):
    # torch's max_pool2d pads with -inf; avg_pool2d counts the zero padding (count_include_pad=True).
    forward, backward = PAIRS[kind]
    x = distinct_values(rng, x_shape) - 10.0  # all negative: a zero-padded max would be wrong
    out, cache = forward(x, F, S, mode, pad=P)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    xt = nchw.to_torch(x, requires_grad=True)
    pool = torch.nn.functional.max_pool2d if mode == "max" else torch.nn.functional.avg_pool2d
    out_t = pool(xt, F, S, padding=P)
    out_t.backward(nchw.to_torch(dout))
    assert out.shape == nchw.from_torch(out_t).shape
    np.testing.assert_allclose(out, nchw.from_torch(out_t), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, nchw.from_torch(xt.grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_f3_s1_p1_keeps_the_size_and_takes_the_3x3_neighbourhood_max(kind):
    forward, _ = PAIRS[kind]
    x = -np.arange(1.0, 17.0).reshape(1, 4, 4, 1)  # negative: padding zeros would win, -inf never does
    out, _ = forward(x, 3, 1, "max", pad=1)
    X = x[0, :, :, 0]
    expected = [[X[max(i - 1, 0): i + 2, max(j - 1, 0): j + 2].max() for j in range(4)] for i in range(4)]
    np.testing.assert_array_equal(out[0, :, :, 0], expected)


@pytest.mark.parametrize("kind", PAIRS.keys())
@pytest.mark.parametrize("mode", MODES)
def test_padded_pool_gradients(kind, mode, rng, check_grad):
    forward, backward = PAIRS[kind]
    x = distinct_values(rng, (2, 5, 4, 2)) if mode == "max" else rng.standard_normal((2, 5, 4, 2))
    out, cache = forward(x, 3, 2, mode, pad=1, fit="pad")
    dout = rng.standard_normal(out.shape)
    check_grad(lambda: float(np.sum(forward(x, 3, 2, mode, pad=1, fit="pad")[0] * dout)), x,
               backward(dout, cache), name=f"{mode} dx")


@st.composite
def padded_pool_settings(draw):
    fit = draw(st.sampled_from([None, "pad", "crop"]))
    F, S, P, hw = [], [], [], []
    for _ in range(2):
        f, s = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        p = draw(st.integers(0, f // 2))
        extra = draw(st.integers(0, s - 1)) if fit else 0
        out = draw(st.integers(1 + (2 * p >= f), 4))  # the padded input must hold one real row
        F.append(f), S.append(s), P.append(p), hw.append((out - 1) * s + f - 2 * p + extra)
    N, D = draw(st.integers(1, 2)), draw(st.sampled_from(DEPTHS))
    return dict(x_shape=(N, *hw, D), F=tuple(F), S=tuple(S), P=tuple(P), fit=fit,
                mode=draw(st.sampled_from(MODES)), ties=draw(st.booleans()), compiled=draw(st.booleans()),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=60, deadline=None)
@given(setting=padded_pool_settings())
def test_fast_padded_pool_equals_naive(setting):
    rng = np.random.default_rng(setting["seed"])
    shape, F, S, P, fit, mode = (setting[k] for k in ("x_shape", "F", "S", "P", "fit", "mode"))
    x = rng.integers(-2, 3, shape).astype(float) if setting["ties"] else rng.standard_normal(shape)
    out_naive, cache_naive = pool_forward_naive(x, F, S, mode, pad=P, fit=fit)
    dout = rng.standard_normal(out_naive.shape)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _numpy_only(setting, monkeypatch)
        out_fast, cache_fast = pool_forward(x, F, S, mode, pad=P, fit=fit)
        dx_fast = pool_backward(dout, cache_fast)
    assert out_fast.shape == out_naive.shape
    assert np.all(np.isfinite(out_fast))  # no window of padding only
    np.testing.assert_allclose(out_fast, out_naive, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx_fast, pool_backward_naive(dout, cache_naive), rtol=0, atol=1e-12)
    with pytest.MonkeyPatch.context() as monkeypatch:  # inference: no switches, the same output
        _numpy_only(setting, monkeypatch)
        np.testing.assert_array_equal(pool_forward(x, F, S, mode, pad=P, fit=fit, switches=False)[0], out_fast)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_pad_more_than_half_the_window_raises(kind):
    forward, _ = PAIRS[kind]
    with pytest.raises(ShapeError, match=r"pool1: pooling pad P=2 is more than half the window F=3.*P <= 1"):
        forward(np.zeros((1, 6, 6, 1)), 3, 1, "max", pad=2, layer="pool1")


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_padded_window_that_does_not_tile_states_the_padded_formula(kind):
    forward, _ = PAIRS[kind]
    with pytest.raises(ShapeError, match=r"width: \(W - F \+ 2P\)/S \+ 1 = \(8 - 3 \+ 2\*1\)/2 \+ 1 = 4\.5"):
        forward(np.zeros((1, 7, 8, 1)), 3, 2, "avg", pad=1)


@pytest.mark.skipif(not direct.ENABLED, reason="Numba not installed, or VOLNET_NUMBA=0")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_max_pool_keeps_nan_and_splits_over_threads(dtype, rng):
    """The compiled max pool: a NaN in a window makes its output NaN (as np.maximum does), and a batch split
    over two threads gives the same output, switches and gradient as one piece."""
    x = rng.standard_normal((4, 9, 9, 37)).astype(dtype)  # whole tiles of channels, and a tail of 5
    x[1, 4, 4, 2] = x[1, 4, 4, 34] = np.nan
    g = pool_forward(x, 3, 2)[1].geometry
    out, switches = pool_kernels.max_pool(x, g, np.uint8, 1)
    assert np.isnan(out[1, 1:3, 1:3, [2, 34]]).all() and np.isnan(out).sum() == 8
    np.testing.assert_array_equal(out, pool_forward_naive(x, 3, 2, "max")[0])
    split_out, split_switches = pool_kernels.max_pool(x, g, np.uint8, 2)
    np.testing.assert_array_equal(split_out, out)
    for workers in (1, 2):  # inference's kernel, without switches
        np.testing.assert_array_equal(pool_kernels.max_pool_values(x, g, workers), out)
    np.testing.assert_array_equal(split_switches, switches)
    dout = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_array_equal(pool_kernels.pool_backward(dout, g, switches, 2), pool_kernels.pool_backward(dout, g, switches))


@pytest.mark.skipif(not direct.ENABLED, reason="Numba not installed, or VOLNET_NUMBA=0")
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("F, S, size", [(2, 2, 10), (3, 2, 9), (3, 1, 9)])
def test_compiled_float32_pool_equals_naive_over_whole_channel_blocks(mode, F, S, size, rng):
    """float32 fills 16-channel blocks (the hypothesis tests run float64, 8-channel blocks): 37 channels are two
    whole blocks and a tail; small integers make ties, which must go to the first maximum."""
    x = rng.integers(-2, 3, (3, size, size, 37)).astype(np.float32)
    out, cache = pool_forward(x, F, S, mode)
    out_naive, cache_naive = pool_forward_naive(x.astype(np.float64), F, S, mode)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, out_naive, rtol=1e-6, atol=1e-6)
    if mode == "max":
        np.testing.assert_array_equal(cache.switches, cache_naive.switches)
        np.testing.assert_array_equal(pool_forward(x, F, S, mode, switches=False)[0], out)


@settings(max_examples=60, deadline=None)
@given(setting=padded_pool_settings())
def test_backward_through_the_relu_below_equals_the_two_passes(setting):
    """pool_backward(rectified=relu_out) gives relu_backward(pool_backward(...), relu_out) bit for bit, compiled
    or tap by tap, every mode: zeros, negatives and NaN in the ReLU's output (dout * (out > 0))."""
    from volnet.ops import relu_backward

    rng = np.random.default_rng(setting["seed"])
    shape, F, S, P, fit, mode = (setting[k] for k in ("x_shape", "F", "S", "P", "fit", "mode"))
    rectified = np.maximum(rng.integers(-2, 3, shape).astype(float), 0)  # many zeros, as after a ReLU
    rectified.flat[rng.integers(0, rectified.size)] = np.nan
    with pytest.MonkeyPatch.context() as monkeypatch:
        _numpy_only(setting, monkeypatch)
        out, cache = pool_forward(rectified, F, S, mode, pad=P, fit=fit)
        dout = rng.standard_normal(out.shape)
        expected = relu_backward(pool_backward(dout, cache), rectified)
        np.testing.assert_array_equal(pool_backward(dout, cache, rectified=rectified), expected)


@settings(max_examples=60, deadline=None)
@given(F=st.tuples(st.integers(1, 4), st.integers(1, 4)), extra=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       out=st.tuples(st.integers(1, 4), st.integers(1, 4)), fit=st.sampled_from([None, "pad", "crop"]),
       N=st.integers(1, 3), D=st.sampled_from([1, 3, 16, 37]), masked=st.booleans(), threads=st.integers(1, 2),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_max_pool_backward_of_tiling_windows_equals_naive(F, extra, out, fit, N, D, masked, threads, dtype, seed):
    """Windows as wide as their stride (the compiled backward that writes each dx value once) route each
    gradient as the naive backward does through the same switches: any window in each direction, rows and
    columns past the last window (fit="crop") or a last window over padding (fit="pad"), ties, NaN, through
    a ReLU's output (its zeros and NaN) or not, the batch split over threads, both dtypes."""
    from volnet.ops import relu_backward, threads as threads_module
    from volnet.ops.threads import Workers

    hw = tuple((o - 1) * f + f + (min(e, f - 1) if fit else 0) for o, f, e in zip(out, F, extra))
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.integers(-2, 3, (N, *hw, D)), 0).astype(dtype)  # ties, and a ReLU's zeros
    x.flat[rng.integers(0, x.size)] = np.nan
    pooled, cache = pool_forward(x, F, F, "max", fit=fit)
    dout = rng.standard_normal(pooled.shape).astype(dtype)
    expected = pool_backward_naive(dout, cache)
    if masked:
        expected = relu_backward(expected, x)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(threads_module, "MIN_PART_BYTES", 1)  # a part per image, however small
        dx = pool_backward(dout, cache, workers=Workers(cores=threads, blas_held=True),
                           rectified=x if masked else None)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, expected)
