"""BatchNorm and Dropout layers: shapes, running averages against PyTorch, dropout's RNG, gradient checks."""

import json

import numpy as np
import pytest

from volnet import Sequential
from volnet.gradcheck import numerical_gradient, relative_error
from volnet.layers import FC, BatchNorm, Conv2D, Dropout, MaxPool, ReLU, layer_from_config
from volnet.layers.paths import backward_layers, forward_layers


# ---------------------------------------------------------------------------
# Shapes, parameters, config
# ---------------------------------------------------------------------------

def test_batchnorm_shapes_parameters_and_buffers():
    net = Sequential([Conv2D(12, 3, P=1), BatchNorm(), ReLU(), Dropout(), FC(10)], input_shape=(8, 8, 3))
    assert net.shapes == [(8, 8, 12)] * 4 + [(10,)]
    bn = net[1]
    assert bn.num_params == 2 * 12 and net[3].num_params == 0
    gamma, beta = bn.params()
    assert (gamma.name, beta.name) == ("gamma", "beta")
    np.testing.assert_array_equal(gamma.value, np.ones(12, dtype=np.float32))
    np.testing.assert_array_equal(beta.value, np.zeros(12, dtype=np.float32))
    buffers = bn.buffers()
    assert sorted(buffers) == ["running_mean", "running_var"]
    assert all(b.shape == (12,) and b.dtype == np.float32 for b in buffers.values())
    np.testing.assert_array_equal(buffers["running_mean"], 0)
    np.testing.assert_array_equal(buffers["running_var"], 1)


def test_batchnorm_after_fc_normalises_each_neuron():
    net = Sequential([FC(6), BatchNorm()], input_shape=(2, 2, 3), dtype=np.float64)
    assert net.output_shape == (6,) and net[1].num_params == 12
    x = np.random.default_rng(0).standard_normal((16, 2, 2, 3))
    out = net.forward(x, train=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-3)


@pytest.mark.parametrize("layer", [BatchNorm(), BatchNorm(eps=1e-3, momentum=0.01), Dropout(), Dropout(0.25)])
def test_config_rebuilds_the_layer(layer):
    config = json.loads(json.dumps({"type": type(layer).__name__, **layer.get_config()}))
    rebuilt = layer_from_config(config)
    assert type(rebuilt) is type(layer) and rebuilt.get_config() == layer.get_config()


def test_repr_shows_only_non_defaults():
    assert repr(BatchNorm()) == "BatchNorm()"
    assert repr(BatchNorm(momentum=0.01)) == "BatchNorm(momentum=0.01)"
    assert repr(Dropout()) == "Dropout()"
    assert repr(Dropout(0.25)) == "Dropout(p=0.25)"


@pytest.mark.parametrize("p", [1, 1.0, -0.5, 2, float("nan"), None])
def test_dropout_probability_must_be_in_0_1(p):
    with pytest.raises(ValueError, match=r"p \(probability of dropping\)"):
        Dropout(p)


@pytest.mark.parametrize("kwargs", [{"eps": 0}, {"eps": -1e-5}, {"momentum": -0.1}, {"momentum": 1.5}])
def test_batchnorm_hyperparameters_are_validated(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        BatchNorm(**kwargs)


# ---------------------------------------------------------------------------
# BatchNorm: training vs inference, running averages
# ---------------------------------------------------------------------------

def test_batchnorm_inference_uses_the_running_averages_not_the_batch():
    net = Sequential([BatchNorm()], input_shape=(3, 3, 2), dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 3, 3, 2)) * 3 + 5
    # Fresh running averages (mean 0, variance 1): inference is nearly the identity.
    np.testing.assert_allclose(net.forward(x), x / np.sqrt(1 + 1e-5), rtol=1e-12)
    net.forward(x, train=True)
    # Each example's output depends on that example alone, not on the rest of the batch.
    np.testing.assert_allclose(net.forward(x[:1]), net.forward(x)[:1], rtol=1e-12)


def test_batchnorm_running_averages_follow_momentum_and_unbiased_variance():
    layer = BatchNorm(momentum=0.25)
    layer.build((5,), np.random.default_rng(0), np.float64)
    running_mean, running_var = layer.buffers().values()
    x = np.random.default_rng(1).standard_normal((8, 5)) * 2 + 1
    layer.forward(x, train=True)
    np.testing.assert_allclose(running_mean, 0.25 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.75 + 0.25 * x.var(axis=0, ddof=1), rtol=1e-12)
    assert layer.buffers()["running_mean"] is running_mean  # updated in place: buffers() stays live


def test_batchnorm_training_on_one_vector_is_refused():
    net = Sequential([FC(3), BatchNorm()], input_shape=(1, 1, 2))
    with pytest.raises(ValueError, match="more than one value per depth slice"):
        net.forward(np.ones((1, 1, 1, 2)), train=True)
    assert net.forward(np.ones((1, 1, 1, 2))).shape == (1, 3)  # inference is fine


@pytest.mark.parametrize("shape", [(4, 3, 5, 3), (6, 4)])
def test_batchnorm_layer_matches_torch_over_several_steps(torch, shape):
    """Outputs, gradients and running averages after every training step, then inference, vs torch.nn.BatchNormNd."""
    rng = np.random.default_rng(5)
    D, momentum, eps = shape[-1], 0.3, 1e-4
    layer = BatchNorm(eps=eps, momentum=momentum)
    layer.build(shape[1:], rng, np.float64)
    gamma, beta = layer.params()
    gamma.value[:] = rng.uniform(0.5, 2, D)
    beta.value[:] = rng.standard_normal(D)

    module = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
        D, eps=eps, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(gamma.value))
        module.bias.copy_(torch.tensor(beta.value))

    def to_torch(a):  # NHWC -> NCHW; vectors are the same
        return torch.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if a.ndim == 4 else a))

    def from_torch(t):
        a = t.detach().numpy()
        return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a

    module.train()
    for _ in range(3):
        x = rng.standard_normal(shape) * 2 - 1
        dout = rng.standard_normal(shape)
        out = layer.forward(x, train=True)
        dx = layer.backward(dout)
        xt = to_torch(x).requires_grad_()
        module.zero_grad()
        out_t = module(xt)
        out_t.backward(to_torch(dout))
        np.testing.assert_allclose(out, from_torch(out_t), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, from_torch(xt.grad), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(gamma.grad, module.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(beta.grad, module.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.running_mean, module.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(layer.running_var, module.running_var.numpy(), rtol=1e-12)

    module.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(layer.forward(x, train=False), from_torch(module(to_torch(x))),
                               rtol=1e-10, atol=1e-12)


def test_float32_network_stays_float32():
    net = Sequential([Conv2D(4, 3, P=1), BatchNorm(), ReLU(), Dropout(0.5), FC(3)], input_shape=(5, 5, 2))
    x = np.random.default_rng(0).standard_normal((3, 5, 5, 2)).astype(np.float32)
    out = net.forward(x, train=True)
    dx = net.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in net.params())
    assert all(b.dtype == np.float32 for b in net[1].buffers().values())
    assert net.forward(x).dtype == np.float32


# ---------------------------------------------------------------------------
# Dropout: training vs inference, random numbers
# ---------------------------------------------------------------------------

def test_dropout_inference_is_the_identity():
    net = Sequential([Dropout(0.5)], input_shape=(4, 4, 3))
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype(np.float32)
    assert net.forward(x, train=False) is x


def test_dropout_training_drops_about_p_and_scales_the_rest():
    p = 0.3
    net = Sequential([Dropout(p)], input_shape=(40, 50, 10), seed=3)
    x = np.random.default_rng(0).uniform(1, 2, (5, 40, 50, 10)).astype(np.float32)  # 100 000 activations
    out = net.forward(x, train=True)
    dropped = out == 0
    assert abs(dropped.mean() - p) < 0.01  # standard deviation of the fraction: 0.0015
    np.testing.assert_allclose(out[~dropped], x[~dropped] / (1 - p), rtol=1e-6)
    assert abs(out.mean() / x.mean() - 1) < 0.01  # expectation preserved
    dx = net.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx == 0, dropped)


def test_dropout_draws_a_new_mask_every_step():
    net = Sequential([Dropout(0.5)], input_shape=(4, 4, 4))
    x = np.ones((2, 4, 4, 4))
    assert not np.array_equal(net.forward(x, train=True), net.forward(x, train=True))


def test_dropout_is_reproducible_from_the_network_seed():
    def masks(seed):
        net = Sequential([Dropout(0.5), Conv2D(2, 3, P=1), Dropout(0.5)], input_shape=(4, 4, 2), seed=seed)
        ones = np.ones((2, 4, 4, 2))
        return [layer.forward(ones, train=True) for layer in (net[0], net[2])]

    first, again, other = masks(0), masks(0), masks(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], first[1])  # two Dropout layers draw different masks


def test_dropout_does_not_change_the_other_layers_initial_weights():
    plain = Sequential([Conv2D(3, 3), FC(4)], input_shape=(5, 5, 2), seed=7)
    with_dropout = Sequential([Conv2D(3, 3), Dropout(0.5), FC(4)], input_shape=(5, 5, 2), seed=7)
    for a, b in zip(plain.params(), with_dropout.params()):
        np.testing.assert_array_equal(a.value, b.value)


def test_dropout_rng_state_round_trips_through_json():
    net = Sequential([Dropout(0.5)], input_shape=(3, 3, 3))
    x = np.ones((2, 3, 3, 3))
    dropout = net[0]
    saved = json.loads(json.dumps(dropout.rng_state()))  # what a checkpoint's metadata holds
    first = net.forward(x, train=True)
    net.forward(x, train=True)
    dropout.set_rng_state(saved)
    np.testing.assert_array_equal(net.forward(x, train=True), first)
    assert isinstance(dropout.rng, np.random.Generator)


def test_unbuilt_dropout_explains_itself():
    with pytest.raises(RuntimeError, match="build"):
        Dropout(0.5).forward(np.ones((2, 3)), train=True)
    x = np.ones((2, 3))
    assert Dropout(0.5).forward(x) is x  # inference needs no generator


# ---------------------------------------------------------------------------
# Gradient checks in a network (float64, training-mode forward)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layers, input_shape", [
    ([BatchNorm()], (3, 2, 3)),
    ([FC(5), BatchNorm()], (2, 2, 2)),
    ([Conv2D(3, 3, P=1), BatchNorm(), ReLU(), FC(4)], (4, 4, 2)),
])
def test_batchnorm_gradients_in_a_network(layers, input_shape, check_net_grad):
    net = Sequential(layers, input_shape=input_shape, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((3, *input_shape))
    check_net_grad(net, x)


def test_bias_before_batchnorm_gets_no_gradient():
    # BatchNorm subtracts each slice's batch mean, so a constant added per slice (a CONV bias) cancels.
    net = Sequential([Conv2D(3, 3, P=1), BatchNorm()], input_shape=(4, 4, 2), dtype=np.float64)
    x = np.random.default_rng(4).standard_normal((2, 4, 4, 2))
    out = net.forward(x, train=True)
    net.backward(np.random.default_rng(5).standard_normal(out.shape))
    np.testing.assert_allclose(net[0].params()[1].grad, 0, atol=1e-12)
    net[0].params()[1].value[:] = [1.0, -2.0, 3.0]
    np.testing.assert_allclose(net.forward(x, train=True), out, atol=1e-12)


def test_conv_batchnorm_relu_dropout_fc_with_p_zero(check_net_grad):
    net = Sequential([Conv2D(3, 3, P=1), BatchNorm(), ReLU(), Dropout(0.0), FC(4)], input_shape=(4, 4, 2),
                     dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((2, 4, 4, 2))
    out = net.forward(x, train=True)
    assert out.shape == (2, 4)
    check_net_grad(net, x)


def test_conv_batchnorm_relu_dropout_fc_with_a_fixed_mask(check_net_grad):
    net = Sequential([Conv2D(3, 3, P=1), BatchNorm(), ReLU(), Dropout(0.5), FC(4)], input_shape=(4, 4, 2),
                     dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((2, 4, 4, 2))
    dropout, state = net[3], net[3].rng_state()
    mask = dropout.forward(np.ones((2, 4, 4, 3)), train=True)
    assert np.any(mask == 0) and np.any(mask == 2)  # the mask drops some units and keeps others
    # Restoring the generator before every forward pass makes dropout draw that same mask each time.
    check_net_grad(net, x, before_forward=lambda: dropout.set_rng_state(state))


def test_first_layer_batchnorm_skips_the_input_gradient_when_asked():
    net = Sequential([BatchNorm(), FC(3)], input_shape=(2, 2, 2), dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 2, 2, 2))
    net.forward(x, train=True)
    assert net.backward(np.ones((4, 3)), input_grad=False) is None
    grads = [p.grad.copy() for p in net.params()]
    net.forward(x, train=True)
    net.backward(np.ones((4, 3)))
    for a, b in zip(grads, (p.grad for p in net.params())):
        np.testing.assert_array_equal(a, b)


def test_keep_in_inference_gives_inference_values_and_their_gradient():
    """``forward(x, train=False, keep=True)``: running statistics, no dropout, and a backward pass through that
    very function (what saliency and Grad-CAM need), leaving the running averages alone."""
    net = Sequential([Conv2D(3, 3, P=1), BatchNorm(), ReLU(), Dropout(0.5), MaxPool(3, 2, fit="crop"), FC(4)],
                     input_shape=(7, 7, 2), dtype=np.float64, seed=3)
    rng = np.random.default_rng(0)
    bn = net.layers[1]
    bn.running_mean[...], bn.running_var[...] = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    running = bn.running_mean.copy()
    x, dout = rng.standard_normal((2, 7, 7, 2)), rng.standard_normal((2, 4))
    kept = forward_layers(net.layers, x, train=False, keep=True)
    dx = backward_layers(net.layers, dout, input_grad=True)
    grads = {name: p.grad.copy() for layer in net.layers for name, p in layer.named_params()}
    np.testing.assert_allclose(kept, net.forward(x, train=False), rtol=1e-12)

    def loss():
        return float(np.sum(net.forward(x, train=False) * dout))

    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    assert relative_error(grads["gamma"], numerical_gradient(loss, bn.gamma)) < 1e-6
    np.testing.assert_array_equal(bn.running_mean, running)


def test_parameters_have_public_names():
    net = Sequential([Conv2D(3, 3, bias=False), BatchNorm(), FC(2)], input_shape=(5, 5, 1))
    conv, bn, fc = net.layers
    assert conv.weight is conv.params()[0].value and conv.weight.shape == (3, 3, 1, 3) and conv.bias is None
    assert conv.use_bias is False and conv.get_config()["bias"] is False
    assert bn.gamma.shape == bn.beta.shape == (3,) and fc.bias is fc.params()[1].value
    assert Conv2D(3, 3).weight is None  # not built yet
