"""BatchNorm and dropout kernels: statistics per depth slice, identities, gradient checks, PyTorch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import numba_off

from volnet.ops import jit
from volnet.ops.norm import affine_forward, batchnorm_plan
from volnet.ops.threads import Workers
from volnet.ops import (batchnorm_backward, batchnorm_fixed_backward, batchnorm_fixed_forward,
                        batchnorm_inference_forward, batchnorm_train_forward, dropout_backward, dropout_forward)
from volnet.shapes import ShapeError

EPS = 1e-5
SHAPES = [(4, 3, 2, 3), (6, 4)]  # a batch of volumes (N, H, W, D) and of vectors (N, K)


def random_batchnorm(rng, shape, dtype=np.float64):
    """Input with a different mean and spread per depth slice, and random gamma, beta."""
    D = shape[-1]
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, D) + rng.uniform(-2, 2, D)
    return x.astype(dtype), rng.uniform(0.5, 2, D).astype(dtype), rng.standard_normal(D).astype(dtype)


# ---------------------------------------------------------------------------
# BatchNorm: values and identities
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_statistics_are_per_depth_slice(rng, shape):
    x, _, _ = random_batchnorm(rng, shape)
    D = shape[-1]
    out, _, mean, var = batchnorm_train_forward(x, np.ones(D), np.zeros(D), EPS)
    slices = x.reshape(-1, D)  # every value of depth slice d, over the batch and all positions
    np.testing.assert_allclose(mean, slices.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, slices.var(axis=0), rtol=1e-12)  # biased: divided by m
    flat = out.reshape(-1, D)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(flat.var(axis=0), var / (var + EPS), rtol=1e-12)


def test_spatial_batchnorm_is_vector_batchnorm_over_every_position(rng):
    # Identity: a volume (N, H, W, D) normalised per slice == N*H*W vectors of D normalised per neuron.
    x, gamma, beta = random_batchnorm(rng, (3, 4, 5, 2))
    dout = rng.standard_normal(x.shape)
    out, cache, _, _ = batchnorm_train_forward(x, gamma, beta, EPS)
    out_v, cache_v, _, _ = batchnorm_train_forward(x.reshape(-1, 2), gamma, beta, EPS)
    np.testing.assert_allclose(out, out_v.reshape(x.shape), rtol=1e-12)
    for g, g_v in zip(batchnorm_backward(dout, cache), batchnorm_backward(dout.reshape(-1, 2), cache_v)):
        np.testing.assert_allclose(g.reshape(g_v.shape), g_v, rtol=1e-10)


def test_gamma_std_and_beta_mean_undo_the_normalisation(rng):
    # Identity: BatchNorm can represent the identity map, gamma = sqrt(var + eps) and beta = mean.
    x, _, _ = random_batchnorm(rng, (5, 3, 3, 4))
    _, _, mean, var = batchnorm_train_forward(x, np.ones(4), np.zeros(4), EPS)
    out, _, _, _ = batchnorm_train_forward(x, np.sqrt(var + EPS), mean, EPS)
    np.testing.assert_allclose(out, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_inference_with_the_batch_statistics_equals_training(rng, shape):
    x, gamma, beta = random_batchnorm(rng, shape)
    out, _, mean, var = batchnorm_train_forward(x, gamma, beta, EPS)
    np.testing.assert_allclose(batchnorm_inference_forward(x, gamma, beta, mean, var, EPS), out,
                               rtol=1e-12, atol=1e-12)


def test_inference_is_the_formula_with_fixed_statistics(rng):
    x, gamma, beta = random_batchnorm(rng, (2, 3, 3, 4))
    mean, var = rng.standard_normal(4), rng.uniform(0.1, 2, 4)
    expected = gamma * (x - mean) / np.sqrt(var + EPS) + beta
    np.testing.assert_allclose(batchnorm_inference_forward(x, gamma, beta, mean, var, EPS), expected, rtol=1e-12)


def test_gamma_of_the_wrong_depth_is_a_shape_error(rng):
    with pytest.raises(ShapeError, match="depth is 3"):
        batchnorm_train_forward(rng.standard_normal((2, 4, 4, 3)), np.ones(4), np.zeros(4), EPS)


def test_float32_stays_float32(rng):
    x, gamma, beta = random_batchnorm(rng, (4, 3, 3, 2), np.float32)
    out, cache, mean, var = batchnorm_train_forward(x, gamma, beta, EPS)
    grads = batchnorm_backward(np.ones_like(out), cache)
    inference = batchnorm_inference_forward(x, gamma, beta, mean.astype(np.float64), var.astype(np.float64), EPS)
    dropped, mask = dropout_forward(x, 0.5, rng)
    for array in (out, mean, var, *grads, inference, dropped, mask, dropout_backward(out, mask)):
        assert array.dtype == np.float32


# ---------------------------------------------------------------------------
# BatchNorm: gradient checks (float64)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_gradients(rng, check_grad, shape):
    x, gamma, beta = random_batchnorm(rng, shape)
    dout = rng.standard_normal(shape)
    out, cache, _, _ = batchnorm_train_forward(x, gamma, beta, EPS)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)

    def loss():
        return float(np.sum(batchnorm_train_forward(x, gamma, beta, EPS)[0] * dout))

    check_grad(loss, x, dx, name="dx")
    check_grad(loss, gamma, dgamma, name="dgamma")
    check_grad(loss, beta, dbeta, name="dbeta")


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_with_fixed_statistics_gradients(rng, check_grad, shape):
    """The inference map ``gamma * (x - mean) / sqrt(var + eps) + beta`` with a backward pass (saliency)."""
    x, gamma, beta = random_batchnorm(rng, shape)
    mean, var = rng.standard_normal(shape[-1]), rng.uniform(0.5, 2, shape[-1])
    dout = rng.standard_normal(shape)
    out, cache = batchnorm_fixed_forward(x, gamma, beta, mean, var, EPS)
    np.testing.assert_allclose(out, batchnorm_inference_forward(x, gamma, beta, mean, var, EPS), rtol=1e-12)
    dx, dgamma, dbeta = batchnorm_fixed_backward(dout, cache)
    assert batchnorm_fixed_backward(dout, cache, input_grad=False)[0] is None

    def loss():
        return float(np.sum(batchnorm_fixed_forward(x, gamma, beta, mean, var, EPS)[0] * dout))

    check_grad(loss, x, dx, name="dx")
    check_grad(loss, gamma, dgamma, name="dgamma")
    check_grad(loss, beta, dbeta, name="dbeta")


def test_batchnorm_backward_can_skip_the_input_gradient(rng):
    x, gamma, beta = random_batchnorm(rng, (3, 2, 2, 3))
    dout = rng.standard_normal(x.shape)
    _, cache, _, _ = batchnorm_train_forward(x, gamma, beta, EPS)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache, input_grad=False)
    assert dx is None
    np.testing.assert_array_equal(dgamma, batchnorm_backward(dout, cache)[1])
    np.testing.assert_array_equal(dbeta, batchnorm_backward(dout, cache)[2])


# ---------------------------------------------------------------------------
# BatchNorm: PyTorch (NHWC here, NCHW there)
# ---------------------------------------------------------------------------

def _to_torch_layout(torch, array):
    """(N, H, W, D) -> (N, D, H, W); vectors (N, K) are the same in both."""
    return torch.tensor(np.ascontiguousarray(array.transpose(0, 3, 1, 2) if array.ndim == 4 else array))


def _from_torch_layout(tensor):
    array = tensor.detach().numpy()
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_training_matches_torch(rng, torch, shape):
    x, gamma, beta = random_batchnorm(rng, shape)
    dout = rng.standard_normal(shape)
    out, cache, _, _ = batchnorm_train_forward(x, gamma, beta, EPS)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)

    xt = _to_torch_layout(torch, x).requires_grad_()
    gt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    out_t = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
    out_t.backward(_to_torch_layout(torch, dout))
    np.testing.assert_allclose(out, _from_torch_layout(out_t), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, _from_torch_layout(xt.grad), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dgamma, gt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dbeta, bt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_inference_matches_torch_eval(rng, torch, shape):
    x, gamma, beta = random_batchnorm(rng, shape)
    mean, var = rng.standard_normal(shape[-1]), rng.uniform(0.1, 2, shape[-1])
    out_t = torch.nn.functional.batch_norm(_to_torch_layout(torch, x), torch.tensor(mean), torch.tensor(var),
                                           torch.tensor(gamma), torch.tensor(beta), training=False, eps=EPS)
    np.testing.assert_allclose(batchnorm_inference_forward(x, gamma, beta, mean, var, EPS),
                               _from_torch_layout(out_t), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_drops_about_p_and_scales_the_rest(p):
    x = np.random.default_rng(1).uniform(1, 2, (50, 40, 50))  # 100 000 nonzero activations
    out, mask = dropout_forward(x, p, np.random.default_rng(7))
    dropped = out == 0
    # The dropped fraction has standard deviation sqrt(p(1-p)/100000) <= 0.0016.
    assert abs(dropped.mean() - p) < 0.01
    np.testing.assert_allclose(out[~dropped], x[~dropped] / (1 - p), rtol=1e-15)
    np.testing.assert_array_equal(np.unique(mask), [0, 1 / (1 - p)])


@pytest.mark.parametrize("p", [0.3, 0.75])
def test_dropout_preserves_the_expectation(p):
    # Averaged over many draws, every activation keeps its value: E[mask] = (1-p) * 1/(1-p) = 1.
    x = np.linspace(-2, 3, 24).reshape(2, 3, 2, 2)
    rng = np.random.default_rng(3)
    mean = np.mean([dropout_forward(x, p, rng)[0] for _ in range(4000)], axis=0)
    # std of one mean: |x| sqrt(p/(1-p)/4000) < 3 * 0.028
    np.testing.assert_allclose(mean, x, atol=0.15)
    assert abs(mean.sum() - x.sum()) < 0.5


def test_dropout_with_p_zero_keeps_everything(rng):
    x = rng.standard_normal((3, 4, 4, 2))
    out, mask = dropout_forward(x, 0.0, rng)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(mask, 1.0)


def test_dropout_is_reproducible_with_a_seeded_rng():
    x = np.ones((4, 5, 5, 3))
    a, _ = dropout_forward(x, 0.5, np.random.default_rng(42))
    b, _ = dropout_forward(x, 0.5, np.random.default_rng(42))
    c, _ = dropout_forward(x.astype(np.float32), 0.5, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)  # the same entries dropped whatever the dtype


def test_dropout_gradient_with_a_fixed_mask(rng, check_grad):
    x = rng.standard_normal((3, 4, 3, 2))
    dout = rng.standard_normal(x.shape)

    def forward():  # a freshly seeded generator each time: the same mask in every call
        return dropout_forward(x, 0.4, np.random.default_rng(5))

    _, mask = forward()
    dx = dropout_backward(dout, mask)
    check_grad(lambda: float(np.sum(forward()[0] * dout)), x, dx, name="dx")
    np.testing.assert_array_equal(dx[mask == 0], 0)  # nothing flows back through a dropped unit


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, float("nan"), "half"])
def test_dropout_probability_is_validated(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_forward(np.ones((2, 3)), p, np.random.default_rng(0))


# ---------------------------------------------------------------------------
# BatchNorm: the compiled kernels against the NumPy expressions (their twin)
# ---------------------------------------------------------------------------

@pytest.mark.skipif(not jit.ENABLED, reason="Numba is not installed (or VOLNET_NUMBA=0)")
@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=2, max_size=4).filter(lambda s: np.prod(s[:-1]) >= 2),
       dtype=st.sampled_from([np.float32, np.float64]), workers=st.integers(1, 3), strided=st.booleans(),
       input_grad=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_compiled_batchnorm_equals_the_numpy_expressions(shape, dtype, workers, strided, input_grad, seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta = random_batchnorm(rng, shape, dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    if strided:  # a strided dout, as a Residual's branch hands on
        dout = np.repeat(dout, 2, axis=-1)[..., ::2]
    split = Workers(cores=workers, blas_held=True)
    assert batchnorm_plan(dtype) == "compiled"
    got = batchnorm_train_forward(x, gamma, beta, EPS, workers=split)
    got_grads = batchnorm_backward(dout, got[1], input_grad, workers=split)
    got_inference = batchnorm_inference_forward(x, gamma, beta, got[2], got[3], EPS, workers=split)
    with numba_off():
        assert batchnorm_plan(dtype) == "numpy"
        expected = batchnorm_train_forward(x, gamma, beta, EPS)
        expected_grads = batchnorm_backward(dout, expected[1], input_grad)
        expected_inference = batchnorm_inference_forward(x, gamma, beta, expected[2], expected[3], EPS)
    # float32 sums over the m = N*H*W values of a slice, taken in another order: rounding grows as sqrt(m)
    # (dgamma 3e-5 off on a 4x9x9 batch against atol 1e-5)
    m = int(np.prod(shape[:-1]))
    tol = dict(rtol=1e-5, atol=1e-5 * np.sqrt(m)) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for a, b in [(got[0], expected[0]), (got[1].x_hat, expected[1].x_hat), (got[2], expected[2]),
                 (got[3], expected[3]), (got_inference, expected_inference), *zip(got_grads[1:], expected_grads[1:])]:
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, **tol)
    if input_grad:
        np.testing.assert_allclose(got_grads[0], expected_grads[0], **tol)
    else:
        assert got_grads[0] is None and expected_grads[0] is None


@pytest.mark.skipif(not jit.ENABLED, reason="Numba is not installed (or VOLNET_NUMBA=0)")
@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=2, max_size=4), dtype=st.sampled_from([np.float32, np.float64]),
       workers=st.integers(1, 3), relu=st.booleans(), in_place=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_compiled_affine_map_equals_the_numpy_expressions(shape, dtype, workers, relu, in_place, seed):
    """A fused BatchNorm's map ``x * scale + shift`` (then the ReLU) per depth slice, compiled, in place (its own
    kernel, reading and writing one array) or into a new array, against NumPy's; a NaN stays NaN."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[rng.integers(x.size)] = np.nan
    scale, shift = rng.uniform(0.5, 2, shape[-1]), rng.standard_normal(shape[-1])
    expected = x * scale.astype(dtype) + shift.astype(dtype)
    if relu:
        expected = np.maximum(expected, 0)  # (NumPy's maximum keeps NaN too)
    given_x = x.copy()
    got = affine_forward(given_x, scale, shift, workers=Workers(cores=workers, blas_held=True), relu=relu,
                         in_place=in_place)
    assert got.dtype == dtype and got.shape == x.shape
    assert np.shares_memory(got, given_x) == in_place
    if not in_place:
        np.testing.assert_array_equal(given_x, x)  # the input untouched
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)
