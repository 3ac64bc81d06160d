"""FC and ReLU kernels: values on volume batches, gradient checks, PyTorch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.ops import fc_backward, fc_forward, relu_backward, relu_forward
from volnet.ops import threads
from volnet.ops.threads import Workers
from volnet.shapes import ShapeError


def random_fc(rng, x_shape, K, dtype=np.float64):
    fan_in = int(np.prod(x_shape[1:]))
    return (rng.standard_normal(x_shape).astype(dtype), rng.standard_normal((fan_in, K)).astype(dtype),
            rng.standard_normal(K).astype(dtype))


def test_fc_on_a_volume_batch_flattens_each_volume(rng):
    x, w, b = random_fc(rng, (3, 4, 5, 2), 6)
    out, _ = fc_forward(x, w, b)
    assert out.shape == (3, 6)  # the notes' 1x1xK volume per input
    for n in range(3):
        for k in range(6):
            # Every output neuron sees every activation of its input volume.
            assert np.isclose(out[n, k], np.sum(x[n] * w[:, k].reshape(4, 5, 2)) + b[k])


def test_fc_on_vectors(rng):
    x, w, b = random_fc(rng, (4, 7), 3)
    out, _ = fc_forward(x, w, b)
    np.testing.assert_allclose(out, x @ w + b, rtol=1e-12)


def test_fc_backward_returns_dx_in_the_input_shape(rng):
    x, w, b = random_fc(rng, (2, 3, 3, 4), 5)
    out, cache = fc_forward(x, w, b)
    dx, dw, db = fc_backward(np.ones_like(out), cache)
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)
    # With dout all ones: db counts the batch, dw sums the inputs, dx sums each weight row.
    np.testing.assert_allclose(db, np.full(5, 2.0))
    np.testing.assert_allclose(dw, np.repeat(x.reshape(2, -1).sum(axis=0)[:, None], 5, axis=1), rtol=1e-12)
    np.testing.assert_allclose(dx[1], w.sum(axis=1).reshape(3, 3, 4), rtol=1e-12)


@pytest.mark.parametrize("x_shape", [(2, 3, 4, 2), (3, 5)], ids=["volumes", "vectors"])
def test_fc_gradients(x_shape, rng, check_grad):
    x, w, b = random_fc(rng, x_shape, 4)
    out, cache = fc_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = fc_backward(dout, cache)

    def loss():
        return float(np.sum(fc_forward(x, w, b)[0] * dout))

    check_grad(loss, x, dx, name="dx")
    check_grad(loss, w, dw, name="dw")
    check_grad(loss, b, db, name="db")


def test_relu_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, [[0, 0, 0, 0.5, 3]])
    np.testing.assert_array_equal(x, [[-2.0, -0.5, 0.0, 0.5, 3.0]])  # input untouched
    # The gradient passes only where the output was positive (zero at the kink).
    np.testing.assert_array_equal(relu_backward(np.array([[1.0, 2, 3, 4, 5]]), cache), [[0, 0, 0, 4, 5]])


def test_relu_keeps_the_volume_shape(rng):
    x = rng.standard_normal((2, 32, 32, 12))
    out, cache = relu_forward(x)
    assert out.shape == relu_backward(np.ones_like(x), cache).shape == (2, 32, 32, 12)


def test_relu_gradient(rng, check_grad):
    x = rng.uniform(0.1, 1.0, (2, 4, 4, 3)) * rng.choice([-1.0, 1.0], (2, 4, 4, 3))  # away from the kink
    out, cache = relu_forward(x)
    dout = rng.standard_normal(out.shape)
    check_grad(lambda: float(np.sum(relu_forward(x)[0] * dout)), x, relu_backward(dout, cache), name="relu dx")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(dtype, rng):
    x, w, b = random_fc(rng, (2, 3, 3, 2), 4, dtype)
    out, cache = fc_forward(x, w, b)
    grads = fc_backward(np.ones_like(out), cache)
    relu_out, relu_cache = relu_forward(x)
    assert [a.dtype for a in (out, *grads, relu_out, relu_backward(x, relu_cache))] == [dtype] * 6


def test_fc_shape_mismatch_names_both_sizes():
    with pytest.raises(ShapeError, match=r"^fc6: each input holds 48 values .* expect 50 inputs"):
        fc_forward(np.zeros((2, 4, 4, 3)), np.zeros((50, 10)), np.zeros(10), layer="fc6")


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)], ids=["float32", "float64"])
def test_fc_matches_torch_linear(dtype, tol, rng, torch):
    x, w, b = random_fc(rng, (3, 4, 4, 2), 5, dtype)
    out, cache = fc_forward(x, w, b)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = fc_backward(dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(np.ascontiguousarray(w.T), requires_grad=True)  # torch stores (K, fan_in)
    bt = torch.tensor(b, requires_grad=True)
    out_t = torch.nn.functional.linear(xt.flatten(1), wt, bt)
    out_t.backward(torch.tensor(dout))

    for ours, theirs, name in [(out, out_t.detach().numpy(), "out"), (dx, xt.grad.numpy(), "dx"),
                               (dw, wt.grad.numpy().T, "dw"), (db, bt.grad.numpy(), "db")]:
        assert ours.dtype == dtype, name
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol, err_msg=name)


def test_relu_matches_torch(rng, torch):
    x = rng.standard_normal((2, 5, 5, 3))
    out, cache = relu_forward(x)
    dout = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    out_t = torch.relu(xt)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_array_equal(relu_backward(dout, cache), xt.grad.numpy())


def test_fc_with_relu_rectifies_the_output_in_place(rng):
    x, w, b = rng.standard_normal((5, 2, 2, 3)), rng.standard_normal((12, 4)), rng.standard_normal(4)
    plain, _ = fc_forward(x, w, b)
    fused, _ = fc_forward(x, w, b, relu=True)
    assert (plain < 0).any()
    np.testing.assert_array_equal(fused, np.maximum(plain, 0))


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), dtype=st.sampled_from([np.float32, np.float64]),
       workers=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_relu_backward_is_dout_times_positive_output(shape, dtype, workers, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[::3] = 0  # the boundary: no gradient where the output is 0
    dout = rng.standard_normal(shape).astype(dtype)
    dout.flat[::5] = np.nan  # NaN passes where the output is positive and multiplies by 0 elsewhere
    out, cache = relu_forward(x)
    got = relu_backward(dout, cache, workers=Workers(cores=workers, blas_held=True))
    np.testing.assert_array_equal(got, dout * (out > 0))
    assert got.dtype == dtype


@pytest.mark.parametrize("rows, inputs, outputs", [(64, 300, 40), (40, 8, 300)], ids=["by columns", "by rows"])
def test_fc_split_over_the_cores_equals_one_multiply(rows, inputs, outputs, rng, monkeypatch):
    # a batch smaller than the weights splits the weights' columns, a larger one the batch's rows
    monkeypatch.setattr(threads, "MIN_PART_MULTIPLY_ADDS", 1)  # split however small the multiply
    x, w, b = rng.standard_normal((rows, inputs)), rng.standard_normal((inputs, outputs)), rng.standard_normal(outputs)
    dout = rng.standard_normal((rows, outputs))
    split = Workers(cores=3, blas_held=True)
    out, cache = fc_forward(x, w, b, workers=split)
    np.testing.assert_allclose(out, x @ w + b, rtol=1e-12, atol=1e-12)
    dx, dw, db = fc_backward(dout, cache, workers=split)
    np.testing.assert_allclose(dx, dout @ w.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, x.T @ dout, rtol=1e-12, atol=1e-12)
