"""CONV kernels: the notes' worked examples, gradient checks, fast == naive, PyTorch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import assert_fast_equals_naive, torch_conv, window_settings, winograd_enabled

from volnet.ops import (conv_backward, conv_backward_input_flipped, conv_backward_naive, conv_forward,
                        conv_forward_naive, fc_forward, im2col)
from volnet.ops.conv_rows import SHALLOW_DEPTH
from volnet.shapes import ShapeError

FORWARDS = {"naive": conv_forward_naive, "fast": conv_forward}
PAIRS = {"naive": (conv_forward_naive, conv_backward_naive), "fast": (conv_forward, conv_backward)}


def random_conv(rng, x_shape, F, K, dtype=np.float64):
    """Input ``x_shape``, K filters of spatial size F (int or (Fh, Fw)) spanning the full depth."""
    Fh, Fw = (F, F) if isinstance(F, int) else F
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((Fh, Fw, x_shape[3], K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b


# ---------------------------------------------------------------------------
# The notes' Numpy example: X is 11x11x4, F=5, S=2, P=0 -> V is 4x4xK
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("forward", FORWARDS.values(), ids=FORWARDS.keys())
def test_numpy_example_from_the_notes(forward, rng):
    X = rng.standard_normal((11, 11, 4))
    W0, W1 = rng.standard_normal((2, 5, 5, 4))
    b0, b1 = rng.standard_normal(2)
    w = np.stack([W0, W1], axis=-1)  # (F, F, D, K) = (5, 5, 4, 2)

    out, _ = forward(X[None], w, np.array([b0, b1]), stride=2, pad=0)
    V = out[0]

    assert V.shape == (4, 4, 2)
    # The first activation map, walking down the first axis in steps of S=2.
    assert np.isclose(V[0, 0, 0], np.sum(X[:5, :5, :] * W0) + b0)
    assert np.isclose(V[1, 0, 0], np.sum(X[2:7, :5, :] * W0) + b0)
    assert np.isclose(V[2, 0, 0], np.sum(X[4:9, :5, :] * W0) + b0)
    assert np.isclose(V[3, 0, 0], np.sum(X[6:11, :5, :] * W0) + b0)
    # The second activation map: same receptive fields, the other filter.
    assert np.isclose(V[0, 0, 1], np.sum(X[:5, :5, :] * W1) + b1)
    assert np.isclose(V[1, 0, 1], np.sum(X[2:7, :5, :] * W1) + b1)
    assert np.isclose(V[2, 0, 1], np.sum(X[4:9, :5, :] * W1) + b1)
    assert np.isclose(V[3, 0, 1], np.sum(X[6:11, :5, :] * W1) + b1)
    assert np.isclose(V[0, 1, 1], np.sum(X[:5, 2:7, :] * W1) + b1)  # going along y
    assert np.isclose(V[2, 3, 1], np.sum(X[4:9, 6:11, :] * W1) + b1)  # along both
    # And every other neuron the same way.
    for x_ in range(4):
        for y in range(4):
            for d, (Wd, bd) in enumerate([(W0, b0), (W1, b1)]):
                field = X[2 * x_: 2 * x_ + 5, 2 * y: 2 * y + 5, :]
                assert np.isclose(V[x_, y, d], np.sum(field * Wd) + bd)


def test_filter_5x5x3_has_75_weights_and_one_bias_and_sees_a_5x5x3_region(rng):
    # One neuron of a CONV layer on a 32x32x3 input with a 5x5 filter.
    x, w, b = random_conv(rng, (1, 32, 32, 3), 5, 1)
    assert w[..., 0].size + b[:1].size == 5 * 5 * 3 + 1 == 76
    out, cache = conv_forward(x, w, b, stride=1, pad=2)
    assert out.shape == (1, 32, 32, 1)
    dout = np.zeros_like(out)
    dout[0, 10, 20, 0] = 1.0
    dx, dw, db = conv_backward(dout, cache)
    # The neuron at (10, 20) depends on exactly the 75 inputs of its receptive
    # field (rows 8..12, columns 18..22, all 3 depths), through w itself.
    assert np.count_nonzero(dx) == 75
    np.testing.assert_array_equal(dx[0, 8:13, 18:23, :], w[..., 0])
    np.testing.assert_array_equal(dw[..., 0], x[0, 8:13, 18:23, :])
    assert db.tolist() == [1.0]


# ---------------------------------------------------------------------------
# The notes' im2col example: 227x227x3 input, 96 filters of 11x11x3, stride 4
# ---------------------------------------------------------------------------


def test_im2col_example_from_the_notes(rng):
    x = rng.standard_normal((227, 227, 3))
    w = rng.standard_normal((11, 11, 3, 96))
    b = rng.standard_normal(96)

    X_col = im2col(x, 11, stride=4)
    assert X_col.shape == (11 * 11 * 3, 55 * 55) == (363, 3025)
    # Every column is one receptive field stretched out, in output order.
    np.testing.assert_array_equal(X_col[:, 0], x[:11, :11, :].ravel())
    np.testing.assert_array_equal(X_col[:, 1 * 55 + 2], x[4:15, 8:19, :].ravel())
    np.testing.assert_array_equal(X_col[:, -1], x[216:227, 216:227, :].ravel())

    W_row = w.reshape(-1, 96).T
    assert W_row.shape == (96, 363)
    result = W_row @ X_col
    assert result.shape == (96, 3025)
    V = result.reshape(96, 55, 55).transpose(1, 2, 0) + b

    out, _ = conv_forward(x[None], w, b, stride=4)
    assert out.shape == (1, 55, 55, 96)
    np.testing.assert_allclose(out[0], V, rtol=1e-10, atol=1e-10)


def test_im2col_on_a_batch_puts_the_volumes_side_by_side(rng):
    x = rng.standard_normal((2, 5, 6, 2))
    cols = im2col(x, 3, stride=1, pad=1)
    assert cols.shape == (3 * 3 * 2, 2 * 5 * 6)
    np.testing.assert_array_equal(cols[:, 30:], im2col(x[1], 3, stride=1, pad=1))
    # The first receptive field of a padded input starts with zeros.
    np.testing.assert_array_equal(cols[:, 0].reshape(3, 3, 2)[0], 0.0)
    np.testing.assert_array_equal(cols[:, 0].reshape(3, 3, 2)[1:, 1:], x[0, :2, :2])


def test_im2col_dilated_column_reads_every_other_input(rng):
    x = rng.standard_normal((7, 7, 1))
    cols = im2col(x, 3, stride=1, dilation=2)
    assert cols.shape == (9, 9)
    np.testing.assert_array_equal(cols[:, 0], x[0:5:2, 0:5:2, :].ravel())


# ---------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------


def test_fc_equals_conv_with_the_filter_the_size_of_the_input(rng):
    # The notes: an FC layer on 7x7x512 is a CONV layer with F=7, P=0, S=1 (here 4x4x3, K=5).
    x, w, b = random_conv(rng, (3, 4, 4, 3), 4, 5)
    conv_out, _ = conv_forward(x, w, b)
    fc_out, _ = fc_forward(x, w.reshape(-1, 5), b)
    assert conv_out.shape == (3, 1, 1, 5)
    np.testing.assert_allclose(conv_out.reshape(3, 5), fc_out, rtol=1e-12, atol=1e-12)


def test_conv_of_a_delta_image_draws_the_flipped_filter(rng):
    # Correlating a single 1 with the filter paints the filter spatially flipped.
    x = np.zeros((1, 5, 5, 1))
    x[0, 2, 2, 0] = 1.0
    w = rng.standard_normal((3, 3, 1, 1))
    out, _ = conv_forward(x, w, np.zeros(1), pad=1)
    np.testing.assert_array_equal(out[0, 1:4, 1:4, 0], w[::-1, ::-1, 0, 0])


def test_bias_is_added_to_every_position_of_its_slice(rng):
    x = np.zeros((2, 4, 5, 3))
    w = rng.standard_normal((3, 3, 3, 2))
    out, _ = conv_forward(x, w, np.array([1.5, -2.0]), pad=1)
    np.testing.assert_array_equal(out[..., 0], 1.5)
    np.testing.assert_array_equal(out[..., 1], -2.0)


# ---------------------------------------------------------------------------
# Gradient checks (float64, centred differences)
# ---------------------------------------------------------------------------

GRAD_CASES = [
    # (x shape, F, stride, pad, dilation, fit)
    pytest.param((2, 5, 5, 3), 3, 1, 1, 1, None, id="F3-S1-P1"),
    pytest.param((2, 7, 7, 2), 3, 2, 0, 1, None, id="stride2"),
    pytest.param((1, 6, 8, 2), 3, (1, 3), 2, 1, None, id="pad2-nonsquare-stride1x3"),
    pytest.param((1, 7, 8, 2), 3, 1, 1, 2, None, id="dilation2"),
    pytest.param((1, 9, 7, 2), 2, 2, 0, 2, None, id="dilation2-stride2"),
    pytest.param((1, 8, 7, 2), 3, 2, 0, 1, "pad", id="fit-pad"),
    pytest.param((2, 8, 9, 1), 3, 3, 1, 1, "crop", id="fit-crop"),
    pytest.param((1, 6, 7, 3), (2, 3), (1, 2), (1, 0), 1, None, id="rect-filter"),
    pytest.param((1, 3, 4, 1), 2, 1, 2, 1, None, id="pad-exceeds-filter"),
    pytest.param((1, 5, 6, SHALLOW_DEPTH), 3, 1, 1, 1, None, id="deep-stride1"),
    pytest.param((1, 7, 7, SHALLOW_DEPTH), 3, 2, 1, 1, None, id="deep-stride2"),
    pytest.param((1, 7, 6, SHALLOW_DEPTH), 2, 1, 2, 2, "crop", id="deep-dilated-pad-exceeds-filter"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind", PAIRS.keys())
@pytest.mark.parametrize("x_shape, F, stride, pad, dilation, fit", GRAD_CASES)
def test_conv_gradients(kind, x_shape, F, stride, pad, dilation, fit, rng, check_kernel_grad):
    forward, backward = PAIRS[kind]
    hyper = dict(stride=stride, pad=pad, dilation=dilation, fit=fit)
    check_kernel_grad(forward, backward, random_conv(rng, x_shape, F, 3), hyper, rng)


# ---------------------------------------------------------------------------
# Fast == naive on random hyperparameters
# ---------------------------------------------------------------------------


# The fast backward picks its input-gradient scheme by depth and stride: draw both sides of SHALLOW_DEPTH.
DEPTHS = st.sampled_from([1, 2, 3, SHALLOW_DEPTH - 1, SHALLOW_DEPTH, SHALLOW_DEPTH + 3])


@pytest.mark.parametrize("use_winograd", [True, False], ids=["winograd", "im2col"])
@settings(max_examples=60, deadline=None)
@given(setting=window_settings(depths=DEPTHS))
def test_fast_conv_equals_naive(use_winograd, setting):
    # 3x3 stride-1 layers at least SHALLOW_DEPTH deep take Winograd where Numba is installed: test both ways
    rng = np.random.default_rng(setting["seed"])
    arrays = random_conv(rng, setting["x_shape"], setting["F"], setting["K"])
    with winograd_enabled(use_winograd):
        assert_fast_equals_naive((conv_forward, conv_backward), (conv_forward_naive, conv_backward_naive), arrays,
                                 setting["hyper"], rng)


@settings(max_examples=40, deadline=None)
@given(setting=window_settings())
def test_input_gradient_is_a_convolution_with_flipped_filters(setting):
    rng = np.random.default_rng(setting["seed"])
    x, w, b = random_conv(rng, setting["x_shape"], setting["F"], setting["K"])
    out, cache = conv_forward_naive(x, w, b, **setting["hyper"])
    dout = rng.standard_normal(out.shape)
    dx_naive, _, _ = conv_backward_naive(dout, cache)
    dx_flipped = conv_backward_input_flipped(dout, cache.w, cache.geometry)
    assert dx_flipped.shape == x.shape
    np.testing.assert_allclose(dx_flipped, dx_naive, rtol=0, atol=1e-10)


@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (3, 2), ((2, 1), (1, 3))])
def test_input_gradient_flipped_on_fixed_settings(stride, dilation, rng):
    x, w, b = random_conv(rng, (2, 9, 10, 3), 3, 4)
    out, cache = conv_forward_naive(x, w, b, stride=stride, pad=1, dilation=dilation, fit="crop")
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(conv_backward_input_flipped(dout, cache.w, cache.geometry),
                               conv_backward_naive(dout, cache)[0], rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------


TORCH_CASES = [
    # (x shape, F, K, stride, padding, dilation): all exact, so volnet's fit=None applies
    pytest.param((2, 8, 8, 3), 3, 4, 1, 1, 1, id="F3-S1-P1"),
    pytest.param((2, 11, 11, 4), 5, 2, 2, 0, 1, id="notes-11-F5-S2"),
    pytest.param((1, 9, 13, 2), 3, 3, 2, 1, 1, id="stride2-pad1-nonsquare"),
    pytest.param((2, 9, 10, 3), 3, 2, 1, 2, 2, id="dilation2"),
    pytest.param((1, 13, 10, 2), 2, 3, (3, 2), (1, 0), (2, 3), id="pairs"),
    pytest.param((1, 6, 7, 1), (3, 2), 5, 1, (1, 0), 1, id="rect-filter"),
]


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-4), (np.float64, 1e-10)], ids=["float32", "float64"])
@pytest.mark.parametrize("x_shape, F, K, stride, padding, dilation", TORCH_CASES)
@pytest.mark.parametrize("kind", PAIRS.keys())
def test_conv_matches_torch(kind, x_shape, F, K, stride, padding, dilation, dtype, tol, rng, torch, nchw):
    forward, backward = PAIRS[kind]
    x, w, b = random_conv(rng, x_shape, F, K, dtype)
    out, cache = forward(x, w, b, stride=stride, pad=padding, dilation=dilation)
    dout = rng.standard_normal(out.shape).astype(dtype)
    ours = (out, *backward(dout, cache))
    theirs = torch_conv(torch, nchw, x, w, b, dout, stride=stride, padding=padding, dilation=dilation)
    for a, t, name in zip(ours, theirs, ("out", "dx", "dw", "db")):
        assert a.dtype == dtype, name
        assert a.shape == t.shape, name
        np.testing.assert_allclose(a, t, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_fit_crop_matches_torch_floor(kind, rng, torch, nchw):
    # (10 - 3 + 2)/2 is not an integer: torch silently drops the last row, as fit="crop" does.
    forward, backward = PAIRS[kind]
    x, w, b = random_conv(rng, (2, 10, 11, 2), 3, 3)
    with pytest.raises(ShapeError, match="fit="):
        forward(x, w, b, stride=2, pad=1)
    out, cache = forward(x, w, b, stride=2, pad=1, fit="crop")
    dout = rng.standard_normal(out.shape)
    theirs = torch_conv(torch, nchw, x, w, b, dout, stride=2, padding=1)
    for a, t, name in zip((out, *backward(dout, cache)), theirs, ("out", "dx", "dw", "db")):
        np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("kind", PAIRS.keys())
def test_fit_pad_matches_torch_on_bottom_right_zero_padded_input(kind, rng, torch, nchw):
    # (8 - 3)/2 and (7 - 3)/2: fit="pad" adds one zero row at the bottom only.
    forward, backward = PAIRS[kind]
    x, w, b = random_conv(rng, (1, 8, 7, 2), 3, 2)
    out, cache = forward(x, w, b, stride=2, fit="pad")
    assert out.shape == (1, 4, 3, 2)
    dout = rng.standard_normal(out.shape)
    padded = np.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0)))
    out_t, dx_t, dw_t, db_t = torch_conv(torch, nchw, padded, w, b, dout, stride=2)
    dx, dw, db = backward(dout, cache)
    np.testing.assert_allclose(out, out_t, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, dx_t[:, :8], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, dw_t, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, db_t, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# Dtypes and errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", PAIRS.keys())
def test_dtype_is_preserved(kind, dtype, rng):
    forward, backward = PAIRS[kind]
    x, w, b = random_conv(rng, (2, 6, 6, 3), 3, 4, dtype)
    out, cache = forward(x, w, b, stride=2, pad=1, fit="crop")
    dx, dw, db = backward(np.ones_like(out), cache)
    assert [a.dtype for a in (out, dx, dw, db)] == [dtype] * 4
    assert conv_backward_input_flipped(np.ones_like(out), cache.w, cache.geometry).dtype == dtype
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)


@pytest.mark.parametrize("forward", FORWARDS.values(), ids=FORWARDS.keys())
def test_depth_mismatch_raises(forward, rng):
    x, w, b = random_conv(rng, (1, 5, 5, 3), 3, 2)
    with pytest.raises(ShapeError, match=r"input depth D=4 does not match the filters' depth 3"):
        forward(np.zeros((1, 5, 5, 4)), w, b)


@pytest.mark.parametrize("forward", FORWARDS.values(), ids=FORWARDS.keys())
def test_wrong_bias_shape_raises(forward, rng):
    x, w, _ = random_conv(rng, (1, 5, 5, 3), 3, 2)
    with pytest.raises(ShapeError, match=r"biases must be \(K,\) = \(2,\)"):
        forward(x, w, np.zeros(3))


@pytest.mark.parametrize("forward", FORWARDS.values(), ids=FORWARDS.keys())
def test_single_volume_without_batch_axis_raises(forward, rng):
    x, w, b = random_conv(rng, (1, 5, 5, 3), 3, 2)
    with pytest.raises(ShapeError, match=r"x\[None\]"):
        forward(x[0], w, b)


@pytest.mark.parametrize("forward", FORWARDS.values(), ids=FORWARDS.keys())
def test_inexact_setting_raises_and_names_the_layer(forward, rng):
    x, w, b = random_conv(rng, (1, 10, 11, 1), 3, 1)
    with pytest.raises(ShapeError, match=r"^conv2: height: .*\(10 - 3 \+ 2\*0\)/2 \+ 1 = 4\.5"):
        forward(x, w, b, stride=2, layer="conv2")


@settings(max_examples=20, deadline=None)
@given(setting=window_settings(depths=DEPTHS))
def test_conv_with_relu_is_the_rectified_convolution(setting):
    rng = np.random.default_rng(setting["seed"])
    x, w, b = random_conv(rng, setting["x_shape"], setting["F"], setting["K"])
    plain, _ = conv_forward(x, w, b, **setting["hyper"])
    fused, _ = conv_forward(x, w, b, **setting["hyper"], relu=True)
    np.testing.assert_array_equal(fused, np.maximum(plain, 0))


@pytest.mark.parametrize("N, H, D, K, F, stride, pad, dilation, forward", [
    (2, 9, 32, 64, 3, 1, 1, 1, "winograd"),
    (2, 9, 16, 8, 3, 1, 1, 1, "direct"),  # narrow: direct before Winograd
    (3, 10, 16, 32, 5, 1, 2, 1, "winograd_fused"),
    (3, 10, 8, 16, 5, 1, 2, 1, "direct"),  # LeNet-sized, the depth not whole blocks of 16 channels
    (2, 9, 64, 192, 5, 1, 2, 1, "winograd_5x5"),
    (8, 16, 16, 32, 3, 2, 1, 1, "direct"),  # stride 2: direct from batch 8
    (2, 16, 16, 32, 3, 2, 1, 1, "im2col"),
    (2, 11, 4, 6, 3, 1, 2, 2, "im2col"),  # dilated
    (3, 13, 3, 16, 7, 2, 3, 1, "direct"),  # crops as it pads (fit="crop")
])
@pytest.mark.parametrize("cores", [1, 2])
def test_every_forward_kernel_pads_in_its_parts_the_array_a_whole_copy_gives(monkeypatch, N, H, D, K, F, stride,
                                                                             pad, dilation, forward, cores):
    """conv_forward hands each kernel an empty padded array and a fill (window.pad_images) that each part of
    its split runs first: the same xp, kept for backward, and the same output bit for bit as padding first."""
    from volnet.ops import conv, conv_plan, direct, jit, threads, winograd, winograd_5x5
    from volnet.ops.window import pad_spatial

    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    for module, name in [(threads, "MIN_PART_MULTIPLY_ADDS"), (direct, "MIN_PART_MULTIPLY_ADDS"),
                         (winograd, "MIN_TILES"), (winograd, "MIN_IMAGES"), (winograd_5x5, "MIN_TILES")]:
        monkeypatch.setattr(module, name, 1)  # the plan and splits of full-sized layers, on small ones
    rng = np.random.default_rng(N * H + K)
    x = rng.standard_normal((N, H, H, D)).astype(np.float32)
    w = rng.standard_normal((F, F, D, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    workers = threads.Workers(cores, blas_held=cores > 1)
    with threads.network_pass(N if cores > 1 else 1):
        out, cache = conv_forward(x, w, b, stride, pad, dilation, fit="crop", relu=True, workers=workers)
        g = cache.geometry
        if jit.ENABLED:  # (without Numba, other plans: the same padding either way)
            assert conv_plan.plan_conv(g, K, np.float32, workers.cores, workers.blas_held).forward == forward
        np.testing.assert_array_equal(out, conv._convolve(pad_spatial(x, g.pads), g, w, b, True, workers))
    np.testing.assert_array_equal(cache.xp, pad_spatial(x, g.pads))


# ---------------------------------------------------------------------------
# Strided 1x1 layers (ResNet's projections): dx written pixel by pixel
# ---------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 12), W=st.integers(1, 12), D=st.integers(1, 20),
       K=st.integers(1, 20), stride=st.tuples(st.integers(1, 4), st.integers(1, 4)), pad=st.integers(0, 2),
       fit=st.sampled_from(["crop", "pad"]), dtype=st.sampled_from([np.float32, np.float64]),
       workers=st.integers(1, 2), seed=st.integers(0, 2**32 - 1))
def test_pointwise_input_gradient_equals_naive(N, H, W, D, K, stride, pad, fit, dtype, workers, seed):
    """Padding the pixels no gradient reaches, crops of rows no window reads, every stride."""
    from volnet.ops import conv_rows, threads
    from volnet.ops.window import geometry

    rng = np.random.default_rng(seed)
    x, w, b = random_conv(rng, (N, H, W, D), 1, K, dtype)
    out, cache = conv_forward_naive(x, w, b, stride, pad, fit=fit)
    dout = rng.standard_normal(out.shape).astype(dtype)
    expected, _, _ = conv_backward_naive(dout, cache)
    g = geometry(x.shape, 1, stride, pad, fit=fit)
    dx = conv_rows.input_gradient_pointwise(dout, w, g, threads.Workers(workers, blas_held=True))
    assert dx.dtype == dtype and dx.shape == x.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx, expected, rtol=tol, atol=tol)


def test_strided_1x1_layers_take_the_pointwise_input_gradient_and_it_checks_numerically(rng, check_grad):
    from volnet.ops.conv_plan import plan_conv
    from volnet.ops.window import geometry

    assert plan_conv(geometry((32, 32, 32, 64), 1, 2, 0, fit="crop"), 128, np.float32).input_gradient == "pointwise"
    assert plan_conv(geometry((32, 32, 32, 64), 1, 1, 0), 128, np.float32).input_gradient == "flipped"
    x, w, b = random_conv(rng, (2, 7, 6, 9), 1, 5)
    _, cache = conv_forward(x, w, b, 2, 1, fit="crop")
    assert plan_conv(cache.geometry, 5, np.float64).input_gradient == "pointwise"
    dout = rng.standard_normal(conv_forward(x, w, b, 2, 1, fit="crop")[0].shape)
    dx, _, _ = conv_backward(dout, cache)
    check_grad(lambda: np.sum(conv_forward(x, w, b, 2, 1, fit="crop")[0] * dout), x, dx)


@pytest.mark.parametrize("dout_strided", [False, True])
def test_pointwise_workspace_estimate_matches_tracemalloc(rng, dout_strided, traced_peak):
    """conv_backward_workspace's bytes for the pointwise input gradient, against what conv_backward allocates."""
    from volnet.ops import conv_workspace, threads

    x = rng.standard_normal((16, 32, 32, 32)).astype(np.float32)
    w = rng.standard_normal((1, 1, 32, 64)).astype(np.float32)
    _, cache = conv_forward(x, w, None, 2, 0, fit="crop")
    # strided as the gradient of a padded CONV above is: its padding's rows and columns cropped
    dout = rng.standard_normal((16, 18, 18, 64)).astype(np.float32)[:, 1:17, 1:17] if dout_strided else \
        rng.standard_normal((16, 16, 16, 64)).astype(np.float32)
    workers = threads.Workers(2, blas_held=True)
    peak = traced_peak(lambda: conv_backward(dout, cache, workers=workers))
    estimate = conv_workspace.conv_backward_workspace(cache.geometry, 64, 4, cores=2, dout_contiguous=not dout_strided)
    assert 0.75 <= estimate.extra / peak <= 1.25, (estimate, peak)


@pytest.mark.parametrize("images", [2, 64])  # the flipped copy, then (enough tiles) Winograd folding the flip in
def test_flipped_input_gradient_workspace_counts_the_flipped_filters(rng, images, traced_peak):
    """conv_backward_workspace's bytes for the stride-1 input gradient, against what conv_backward allocates:
    weights large against the activations, so that the flipped copy of them (or its absence) decides it."""
    from volnet.ops import conv, conv_plan, conv_workspace, threads

    x = rng.standard_normal((images, 6, 6, 64)).astype(np.float32)
    w = rng.standard_normal((3, 3, 64, 256)).astype(np.float32)
    _, cache = conv_forward(x, w, None, 1, 1)
    dout = rng.standard_normal((images, 6, 6, 256)).astype(np.float32)
    workers = threads.Workers(2, blas_held=True)
    flipped = conv.flipped_geometry(cache.geometry, 256)
    winograd_dx = conv_plan.plan_conv(flipped, 64, np.float32, 2, True).forward == "winograd"
    assert conv_plan.plan_conv(cache.geometry, 256, np.float32, 2, True).input_gradient == "flipped"
    assert winograd_dx == (images == 64)
    peak = traced_peak(lambda: conv_backward_input_flipped(dout, w, cache.geometry, workers=workers))
    estimate = conv_workspace.conv_backward_workspace(cache.geometry, 256, 4, cores=2)  # its dx phase the largest
    assert 0.8 <= estimate.extra / peak <= 1.25, (estimate, peak)
