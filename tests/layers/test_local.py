"""The LocallyConnected layer: shapes, parameter count, gradients, config."""

import doctest

import numpy as np
import pytest

from volnet import Sequential, ShapeError
from volnet.layers import FC, Conv2D, LocallyConnected, ReLU, layer_from_config
from volnet.layers import local as local_module


def test_builds_weights_for_every_output_position():
    net = Sequential([LocallyConnected(K=5, F=3, S=2, P=1)], input_shape=(9, 7, 2))
    w, b = net.params()
    # H2 = (9 - 3 + 2)/2 + 1 = 5, W2 = (7 - 3 + 2)/2 + 1 = 4
    assert net.output_shape == (5, 4, 5)
    assert w.value.shape == (5, 4, 3, 3, 2, 5) and b.value.shape == (5, 4, 5)
    assert net.num_params == 5 * 4 * (3 * 3 * 2 * 5 + 5)


@pytest.mark.parametrize("K, F, S, P, input_shape", [(4, 3, 1, 0, (8, 8, 3)), (2, (2, 3), (2, 1), (0, 1), (6, 5, 1)),
                                                     (7, 5, 2, 2, (13, 11, 4))])
def test_costs_h2_w2_times_a_conv_layer(K, F, S, P, input_shape):
    local = Sequential([LocallyConnected(K, F, S, P)], input_shape=input_shape)
    conv = Sequential([Conv2D(K, F, S, P)], input_shape=input_shape)
    H2, W2, _ = conv.output_shape
    assert local.output_shape == conv.output_shape
    assert local.num_params == H2 * W2 * conv.num_params


def test_he_initialisation_and_zero_bias():
    net = Sequential([LocallyConnected(16, 3, P=1)], input_shape=(8, 8, 16), seed=1)
    w, b = (p.value for p in net.params())
    assert w.dtype == np.float32 and not b.any()
    assert w.std() == pytest.approx(np.sqrt(2 / (3 * 3 * 16)), rel=0.05)


def test_stride_that_does_not_fit_fails_at_build_time():
    with pytest.raises(ShapeError, match=r"layer 1 \(LocallyConnected\): height"):
        Sequential([LocallyConnected(2, 3, S=2)], input_shape=(8, 8, 1))
    assert Sequential([LocallyConnected(2, 3, S=2, fit="crop")], input_shape=(8, 8, 1)).output_shape == (3, 3, 2)


@pytest.mark.parametrize("layers, input_shape", [
    ([LocallyConnected(3, 3), ReLU(), FC(2)], (6, 6, 2)),
    ([LocallyConnected(2, 2, S=2, P=1, fit="pad")], (5, 4, 1)),
])
def test_layer_gradients(layers, input_shape, check_net_grad):
    net = Sequential(layers, input_shape=input_shape, seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    for p in net.params():  # non-zero biases, so ReLU's kink is not hit by construction
        p.value[...] = rng.standard_normal(p.value.shape)
    check_net_grad(net, rng.standard_normal((2, *input_shape)))


def test_first_layer_skips_input_gradient_when_asked():
    net = Sequential([LocallyConnected(2, 3, P=1), FC(3)], input_shape=(4, 4, 1), dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 1))
    net.forward(x, train=True)
    assert net.backward(np.ones((2, 3)), input_grad=False) is None
    assert net.params()[0].grad.shape == (4, 4, 3, 3, 1, 2)


@pytest.mark.parametrize("layer", [LocallyConnected(3, 3), LocallyConnected(8, (2, 3), S=2, P=(1, 0), fit="crop")])
def test_config_rebuilds_the_layer(layer):
    config = {"type": type(layer).__name__, **layer.get_config()}
    rebuilt = layer_from_config(config)
    assert type(rebuilt) is LocallyConnected and rebuilt.get_config() == layer.get_config()
    net = Sequential([layer], input_shape=(9, 9, 2))
    assert Sequential.from_config(net.get_config()).output_shape == net.output_shape


def test_repr_and_bad_k():
    assert repr(LocallyConnected(12, 3, P=1)) == "LocallyConnected(K=12, F=3, P=1)"
    with pytest.raises(ValueError, match="K"):
        LocallyConnected(0, 3)


def test_docstring_example():
    assert doctest.testmod(local_module).failed == 0
