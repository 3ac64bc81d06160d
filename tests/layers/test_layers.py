"""Layers: shapes and parameter counts from the notes, gradient checks, configs."""

import numpy as np
import pytest

from volnet import Sequential, ShapeError
from volnet.layers import FC, AvgPool, Conv2D, Flatten, L2Pool, MaxPool, ReLU, layer_from_config


def test_notes_cifar10_volumes():
    # INPUT [32x32x3] -> CONV (12 filters) 32x32x12 -> RELU -> POOL 16x16x12 -> FC 1x1x10
    net = Sequential([Conv2D(12, 3, P=1), ReLU(), MaxPool(2, 2), FC(10)], input_shape=(32, 32, 3))
    assert net.shapes == [(32, 32, 12), (32, 32, 12), (16, 16, 12), (10,)]
    assert "1x1x10" in net.summary()


def test_notes_filter_parameter_count():
    # a 5x5x3 filter has 5*5*3 = 75 weights + 1 bias; K filters: (F*F*D1)*K weights and K biases
    one = Sequential([Conv2D(1, 5)], input_shape=(32, 32, 3))
    assert [p.value.size for p in one.params()] == [75, 1]
    many = Sequential([Conv2D(96, 11, S=4)], input_shape=(227, 227, 3))
    assert many.num_params == 11 * 11 * 3 * 96 + 96
    assert many.output_shape == (55, 55, 96)


def test_he_initialisation_and_zero_bias():
    net = Sequential([Conv2D(64, 3, P=1)], input_shape=(16, 16, 32), seed=1)
    w, b = (p.value for p in net.params())
    assert w.dtype == np.float32 and not b.any()
    assert w.std() == pytest.approx(np.sqrt(2 / (3 * 3 * 32)), rel=0.05)


@pytest.mark.parametrize("layers, input_shape", [
    ([Conv2D(3, 3, S=1, P=1)], (5, 6, 2)),
    ([Conv2D(2, 3, S=2, P=1, dilation=2)], (7, 7, 3)),
    ([Conv2D(2, 2, S=2, fit="pad")], (5, 4, 1)),
    ([Conv2D(2, 3, S=2, fit="crop")], (6, 6, 2)),
    ([MaxPool(2, 2)], (4, 6, 2)),
    ([MaxPool(3, 2)], (7, 5, 2)),
    ([AvgPool(3, 2)], (7, 7, 2)),
    ([L2Pool(2, 2)], (4, 4, 3)),
    ([MaxPool(3, 1, P=1)], (4, 5, 2)),
    ([AvgPool(3, 2, P=1)], (5, 5, 2)),
    ([Conv2D(3, 3, P=1, bias=False), ReLU(), FC(2)], (3, 4, 2)),
    ([FC(4)], (3, 2, 2)),
    ([ReLU(), Flatten(), FC(3)], (2, 3, 2)),
    ([Conv2D(3, 3, P=1), ReLU(), MaxPool(2, 2), FC(4)], (4, 4, 2)),
])
def test_layer_gradients(layers, input_shape, check_net_grad):
    net = Sequential(layers, input_shape=input_shape, dtype=np.float64)
    check_net_grad(net, np.random.default_rng(0).standard_normal((2, *input_shape)))


def test_first_layer_skips_input_gradient_when_asked():
    net = Sequential([Conv2D(2, 3, P=1), FC(3)], input_shape=(4, 4, 1), dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 1))
    dout = np.ones((2, 3))
    net.forward(x, train=True)
    assert net.backward(dout, input_grad=False) is None
    grads_without = [p.grad.copy() for p in net.params()]
    net.forward(x, train=True)
    assert net.backward(dout).shape == x.shape
    for a, b in zip(grads_without, (p.grad for p in net.params())):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layer", [Conv2D(8, 3, S=2, P=1, dilation=2, fit="crop"), MaxPool(3, 2), AvgPool(2),
                                   L2Pool(2, 1, fit="pad"), FC(7), ReLU(), Flatten(), Conv2D(4, 1, bias=False),
                                   MaxPool(3, 1, P=1)])
def test_config_rebuilds_the_layer(layer):
    config = {"type": type(layer).__name__, **layer.get_config()}
    rebuilt = layer_from_config(config)
    assert type(rebuilt) is type(layer) and rebuilt.get_config() == layer.get_config()


def test_repr_shows_only_non_defaults():
    assert repr(Conv2D(12, 3, P=1)) == "Conv2D(K=12, F=3, P=1)"
    assert repr(MaxPool(3, 2)) == "MaxPool(F=3, S=2)"
    assert repr(MaxPool(3, 1, P=1)) == "MaxPool(F=3, S=1, P=1)"
    assert repr(Conv2D(64, 7, S=2, P=3, bias=False)) == "Conv2D(K=64, F=7, S=2, P=3, bias=False)"


def test_padded_pool_keeps_the_size():
    # F=3, S=1, P=1: (W - F + 2P)/S + 1 = W, the inception module's max pool
    net = Sequential([MaxPool(3, 1, P=1)], input_shape=(28, 28, 192))
    assert net.output_shape == (28, 28, 192) and net.num_params == 0
    with pytest.raises(ShapeError, match=r"layer 1 \(AvgPool\): pooling pad P=2 is more than half the window F=3"):
        Sequential([AvgPool(3, 1, P=2)], input_shape=(8, 8, 1))


def test_conv_without_bias_has_weights_only():
    net = Sequential([Conv2D(4, 3, P=1, bias=False)], input_shape=(5, 5, 2), dtype=np.float64)
    assert [p.name for p in net.params()] == ["weight"] and net.num_params == 3 * 3 * 2 * 4
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 2))
    with_bias = Sequential([Conv2D(4, 3, P=1)], input_shape=(5, 5, 2), dtype=np.float64)
    with_bias.params()[0].value[...] = net.params()[0].value  # zero biases: the same function
    np.testing.assert_array_equal(net.forward(x), with_bias.forward(x))


def test_bad_hyperparameters_fail_early():
    with pytest.raises(ValueError, match="K"):
        Conv2D(0, 3)
    with pytest.raises(ValueError, match="K"):
        FC(0)
    with pytest.raises(ValueError, match="fit"):
        Sequential([Conv2D(2, 3, fit="stretch")], input_shape=(8, 8, 1))


def test_backward_without_training_forward_is_explained():
    net = Sequential([Conv2D(2, 3, P=1)], input_shape=(4, 4, 1))
    net.forward(np.zeros((1, 4, 4, 1)), train=False)
    with pytest.raises(RuntimeError, match="train=True"):
        net.backward(np.zeros((1, 4, 4, 2)))


def test_spatial_layer_after_fc_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"layer 2 \(MaxPool\).*volume"):
        Sequential([FC(10), MaxPool(2)], input_shape=(8, 8, 1))
