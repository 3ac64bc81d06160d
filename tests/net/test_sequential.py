"""Sequential: build-time validation, forward/backward, inference keeps no caches."""

import numpy as np
import pytest

from volnet import Sequential, ShapeError
from volnet.layers import FC, AvgPool, Conv2D, MaxPool, ReLU
from volnet.ops import threads


def seed_net(**kwargs):
    return Sequential([Conv2D(12, 3, P=1), ReLU(), MaxPool(2, 2), FC(10)], input_shape=(32, 32, 3), **kwargs)


def test_bad_stride_fails_at_construction_naming_the_layer():
    with pytest.raises(ShapeError) as info:
        Sequential([Conv2D(8, 3, P=1), ReLU(), Conv2D(16, 5, S=2)], input_shape=(32, 32, 3))
    message = str(info.value)
    assert "layer 3 (Conv2D)" in message
    assert "(32 - 5 + 2*0)/2 + 1 = 14.5" in message
    assert "fit=" in message


def test_fit_options_make_the_same_stride_work():
    padded = Sequential([Conv2D(16, 5, S=2, fit="pad")], input_shape=(32, 32, 3))
    cropped = Sequential([Conv2D(16, 5, S=2, fit="crop")], input_shape=(32, 32, 3))
    assert padded.output_shape == (15, 15, 16) and cropped.output_shape == (14, 14, 16)
    out = padded.forward(np.ones((2, 32, 32, 3)))
    assert out.shape == (2, 15, 15, 16)


def test_forward_and_backward_shapes_and_grads():
    net = seed_net()
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    scores = net.forward(x, train=True)
    assert scores.shape == (4, 10) and scores.dtype == np.float32
    dx = net.backward(np.ones_like(scores))
    assert dx.shape == x.shape
    assert [p.grad.shape for p in net.params()] == [(3, 3, 3, 12), (12,), (3072, 10), (10,)]


def test_inference_keeps_no_caches():
    net = seed_net()
    x = np.zeros((2, 32, 32, 3), dtype=np.float32)
    net.forward(x, train=True)
    assert all(layer._cache is not None for layer in net)
    net.forward(x, train=False)
    assert all(layer._cache is None for layer in net)


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = seed_net(seed=3), seed_net(seed=3), seed_net(seed=4)
    np.testing.assert_array_equal(a.params()[0].value, b.params()[0].value)
    assert not np.array_equal(a.params()[0].value, c.params()[0].value)


def test_summary_lists_every_volume_and_parameter_count():
    text = seed_net().summary()
    for volume in ("32x32x3", "32x32x12", "16x16x12", "1x1x10"):
        assert volume in text
    assert "336" in text and "30,730" in text and "total parameters: 31,066" in text


def test_config_round_trip_rebuilds_identical_network():
    net = seed_net(seed=5)
    again = Sequential.from_config(net.get_config())
    assert again.shapes == net.shapes
    for p, q in zip(net.params(), again.params()):
        np.testing.assert_array_equal(p.value, q.value)


@pytest.mark.parametrize("shape, message", [
    ((32, 32, 3), r"one volume.*x\[None\]"),
    ((2, 32, 32, 1), r"expects \(N, 32, 32, 3\)"),
    ((2, 3, 32, 32), r"depth last"),
    ((2, 32, 32), r"expects"),
])
def test_wrong_input_is_a_clear_shape_error(shape, message):
    with pytest.raises(ShapeError, match=message):
        seed_net().forward(np.zeros(shape, dtype=np.float32))


def test_non_layer_is_rejected():
    with pytest.raises(TypeError, match="layer 2"):
        Sequential([ReLU(), "CONV"], input_shape=(4, 4, 1))


# -- CONV -> RELU and FC -> RELU run fused ------------------------------------------


def layer_by_layer(net, x, dout):
    """Forward and backward one layer at a time (nothing fused): the output and every gradient.

    Inside a network pass, as Sequential runs them, so that the same kernels split the batch the same way.
    """
    with threads.network_pass(len(x)) as workers:
        for layer in net.layers:
            x = layer.forward(x, train=True, workers=workers)
        out = x
        for layer in reversed(net.layers):
            dout = layer.backward(dout, workers=workers)
    return out, dout, [p.grad.copy() for p in net.params()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_relu_gives_the_same_output_and_gradients_as_layer_by_layer(dtype, rng):
    """CONV -> RELU and FC -> RELU fused forward, RELU -> POOL (max and average) fused backward: the numbers
    of the layers run one by one, bit for bit."""
    layers = lambda: [Conv2D(6, 3, P=1), ReLU(), MaxPool(2), Conv2D(5, 2, S=2), ReLU(), AvgPool(2), FC(7), ReLU(),
                      FC(3)]
    fused, plain = Sequential(layers(), (8, 8, 3), dtype=dtype), Sequential(layers(), (8, 8, 3), dtype=dtype)
    x = rng.standard_normal((4, 8, 8, 3)).astype(dtype)
    dout = rng.standard_normal((4, 3)).astype(dtype)
    out = fused.forward(x, train=True)
    # the fused ReLU keeps the rectified CONV output as its cache, as an unfused one keeps its own output
    assert fused.layers[1]._cache is not None and (fused.layers[1]._cache >= 0).all()
    dx = fused.backward(dout)
    expected_out, expected_dx, expected_grads = layer_by_layer(plain, x, dout)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)
    for got, expected in zip((p.grad for p in fused.params()), expected_grads):
        np.testing.assert_array_equal(got, expected)


def test_fused_relu_keeps_nothing_in_inference(rng):
    net = Sequential([Conv2D(4, 3, P=1), ReLU(), FC(2), ReLU()], (6, 6, 2))
    out = net.forward(rng.standard_normal((2, 6, 6, 2)))
    assert (out >= 0).all()
    assert all(layer._cache is None for layer in net.layers)


def test_a_fused_relu_pool_pair_first_returns_no_input_gradient_when_none_is_asked(rng):
    net = Sequential([ReLU(), MaxPool(2), FC(3)], (4, 4, 2))
    scores = net.forward(rng.standard_normal((2, 4, 4, 2)).astype(np.float32), train=True)
    assert net.backward(np.ones_like(scores), input_grad=False) is None
    assert all(layer._cache is None for layer in net.layers)


def test_relu_fuses_into_the_compiled_pools_backward_only():
    from volnet.layers import L2Pool
    from volnet.layers.paths import fused_backward_pair

    assert fused_backward_pair(ReLU(), MaxPool(2)) and fused_backward_pair(ReLU(), AvgPool(2))
    assert not fused_backward_pair(ReLU(), L2Pool(2)) and not fused_backward_pair(MaxPool(2), ReLU())
