"""Locally-connected kernels: gradient checks, fast == naive, and the identity with CONV."""

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import assert_fast_equals_naive, window_settings

from volnet.ops import (conv_backward, conv_forward, local_backward, local_backward_naive, local_forward,
                        local_forward_naive)
from volnet.shapes import ShapeError

PAIRS = {"naive": (local_forward_naive, local_backward_naive), "fast": (local_forward, local_backward)}
FORWARDS = {kind: pair[0] for kind, pair in PAIRS.items()}


def random_local(rng, x_shape, out_hw, F, K, dtype=np.float64):
    """Input ``x_shape``; K filters of spatial size F (int or (Fh, Fw)) at each of the ``out_hw`` positions."""
    Fh, Fw = (F, F) if isinstance(F, int) else F
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((*out_hw, Fh, Fw, x_shape[3], K)).astype(dtype)
    b = rng.standard_normal((*out_hw, K)).astype(dtype)
    return x, w, b


def test_each_position_uses_its_own_filter(rng):
    # The notes' 11x11 example, F=5, S=2 -> 4x4 positions; position (i, j) reads
    # X[2i : 2i+5, 2j : 2j+5, :] with its own W_ij and b_ij.
    x, w, b = random_local(rng, (1, 11, 11, 4), (4, 4), 5, 2)
    for forward in FORWARDS.values():
        V = forward(x, w, b, stride=2)[0][0]
        assert V.shape == (4, 4, 2)
        for i in range(4):
            for j in range(4):
                for k in range(2):
                    expected = np.sum(x[0, 2 * i: 2 * i + 5, 2 * j: 2 * j + 5, :] * w[i, j, ..., k]) + b[i, j, k]
                    assert np.isclose(V[i, j, k], expected)


# ---------------------------------------------------------------------------
# Gradient checks (float64, centred differences)
# ---------------------------------------------------------------------------

GRAD_CASES = [
    # (x shape, output H2 x W2, F, stride, pad, dilation, fit)
    pytest.param((2, 4, 4, 2), (4, 4), 3, 1, 1, 1, None, id="F3-S1-P1"),
    pytest.param((2, 7, 7, 2), (3, 3), 3, 2, 0, 1, None, id="stride2"),
    pytest.param((1, 4, 5, 2), (4, 3), 3, (1, 2), 1, 1, None, id="pad1-nonsquare-stride1x2"),
    pytest.param((1, 6, 5, 1), (4, 3), 3, 1, 1, 2, None, id="dilation2"),
    pytest.param((1, 8, 7, 2), (4, 3), 3, 2, 0, 1, "pad", id="fit-pad"),
    pytest.param((2, 8, 9, 1), (3, 3), 3, 3, 1, 1, "crop", id="fit-crop"),
    pytest.param((1, 4, 7, 2), (5, 3), (2, 3), (1, 2), (1, 0), 1, None, id="rect-filter"),
]


@pytest.mark.parametrize("kind", PAIRS.keys())
@pytest.mark.parametrize("x_shape, out_hw, F, stride, pad, dilation, fit", GRAD_CASES)
def test_local_gradients(kind, x_shape, out_hw, F, stride, pad, dilation, fit, rng, check_kernel_grad):
    forward, backward = PAIRS[kind]
    hyper = dict(stride=stride, pad=pad, dilation=dilation, fit=fit)
    out = check_kernel_grad(forward, backward, random_local(rng, x_shape, out_hw, F, 2), hyper, rng)
    assert out.shape == (x_shape[0], *out_hw, 2)


def test_input_grad_false_skips_dx_only(rng):
    x, w, b = random_local(rng, (2, 6, 4, 3), (3, 2), 2, 4)
    out, cache = local_forward(x, w, b, stride=2)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = local_backward(dout, cache)
    skipped = local_backward(dout, cache, input_grad=False)
    assert skipped[0] is None and dx.shape == x.shape
    np.testing.assert_array_equal(skipped[1], dw)
    np.testing.assert_array_equal(skipped[2], db)


# ---------------------------------------------------------------------------
# Fast == naive on random hyperparameters
# ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(setting=window_settings())
def test_fast_local_equals_naive(setting):
    rng = np.random.default_rng(setting["seed"])
    hyper = setting["hyper"]
    # The output size comes from the kernel itself (fit="pad"/"crop" may change it).
    probe = np.zeros((*setting["x_shape"][:3], 1))
    out_hw = conv_forward(probe, np.zeros((*setting["F"], 1, 1)), np.zeros(1), **hyper)[0].shape[1:3]
    arrays = random_local(rng, setting["x_shape"], out_hw, setting["F"], setting["K"])
    out = assert_fast_equals_naive((local_forward, local_backward), (local_forward_naive, local_backward_naive),
                                   arrays, hyper, rng)
    assert out.shape == (setting["x_shape"][0], *out_hw, setting["K"])


# ---------------------------------------------------------------------------
# The identity: every position given the same filter is a CONV layer
# ---------------------------------------------------------------------------

SHARED_CASES = [
    # (x shape, F, stride, pad, dilation, fit)
    pytest.param((3, 6, 6, 3), 3, 1, 1, 1, None, id="F3-S1-P1"),
    pytest.param((2, 11, 11, 4), 5, 2, 0, 1, None, id="notes-11-F5-S2"),
    pytest.param((2, 9, 12, 2), (3, 2), (2, 3), (1, 0), 1, "crop", id="nonsquare-crop"),
    pytest.param((1, 9, 8, 2), 3, 2, 1, 2, "pad", id="dilation2-pad"),
]


@pytest.mark.parametrize("kind", PAIRS.keys())
@pytest.mark.parametrize("x_shape, F, stride, pad, dilation, fit", SHARED_CASES)
def test_shared_filters_equal_conv(kind, x_shape, F, stride, pad, dilation, fit, rng):
    forward, backward = PAIRS[kind]
    Fh, Fw = (F, F) if isinstance(F, int) else F
    K = 3
    x = rng.standard_normal(x_shape)
    w0 = rng.standard_normal((Fh, Fw, x_shape[3], K))
    b0 = rng.standard_normal(K)
    hyper = dict(stride=stride, pad=pad, dilation=dilation, fit=fit)
    conv_out, conv_cache = conv_forward(x, w0, b0, **hyper)
    H2, W2 = conv_out.shape[1:3]
    w = np.broadcast_to(w0, (H2, W2, *w0.shape)).copy()
    b = np.broadcast_to(b0, (H2, W2, K)).copy()

    out, cache = forward(x, w, b, **hyper)
    np.testing.assert_allclose(out, conv_out, rtol=1e-12, atol=1e-12)

    dout = rng.standard_normal(out.shape)
    dx, dw, db = backward(dout, cache)
    conv_dx, conv_dw, conv_db = conv_backward(dout, conv_cache)
    np.testing.assert_allclose(dx, conv_dx, rtol=1e-12, atol=1e-12)
    # Parameter sharing adds up the gradients of every position into the one filter.
    np.testing.assert_allclose(dw.sum(axis=(0, 1)), conv_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db.sum(axis=(0, 1)), conv_db, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Dtypes and errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", PAIRS.keys())
def test_dtype_is_preserved(kind, dtype, rng):
    forward, backward = PAIRS[kind]
    x, w, b = random_local(rng, (2, 6, 6, 3), (3, 3), 3, 4, dtype)
    out, cache = forward(x, w, b, stride=2, pad=1, fit="crop")
    dx, dw, db = backward(np.ones_like(out), cache)
    assert [a.dtype for a in (out, dx, dw, db)] == [dtype] * 4
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)


@pytest.mark.parametrize("forward", FORWARDS.values(), ids=FORWARDS.keys())
def test_weights_for_the_wrong_output_size_raise(forward, rng):
    x, w, b = random_local(rng, (1, 6, 6, 2), (4, 4), 3, 2)
    with pytest.raises(ShapeError, match=r"4x4 output positions but the output is 6x6"):
        forward(x, w, b, pad=1)


@pytest.mark.parametrize("forward", FORWARDS.values(), ids=FORWARDS.keys())
def test_bad_shapes_raise(forward, rng):
    x, w, b = random_local(rng, (1, 5, 5, 3), (3, 3), 3, 2)
    with pytest.raises(ShapeError, match=r"input depth D=4 does not match the filters' depth 3"):
        forward(np.zeros((1, 5, 5, 4)), w, b)
    with pytest.raises(ShapeError, match=r"biases must be \(H2, W2, K\) = \(3, 3, 2\)"):
        forward(x, w, np.zeros(2))
    with pytest.raises(ShapeError, match=r"weights must be \(H2, W2, F, F, D, K\)"):
        forward(x, w[0, 0], b)
    with pytest.raises(ShapeError, match=r"x\[None\]"):
        forward(x[0], w, b)
