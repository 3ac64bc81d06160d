"""to_notation(net): a network written back in the notation (src/volnet/spec/notation.py).

The property that matters: ``build(to_notation(net))`` is the same
architecture, every layer with the same ``get_config()``, for hand-written
nets, the zoo, and random nets.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from volnet import Sequential, ShapeError, SpecError, build, zoo
from volnet.layers import (FC, AvgPool, BatchNorm, Concat, Conv2D, Dropout, Flatten, GlobalAvgPool, Inception,
                           L2Pool, Layer, LocallyConnected, MaxPool, ReLU, Residual)
from volnet.spec import to_notation, write_layer


def assert_round_trip(net: Sequential) -> str:
    text = to_notation(net)
    again = build(text, allocate=False)
    assert again.input_shape == net.input_shape
    assert again.get_config()["layers"] == net.get_config()["layers"], text
    assert again.shapes == net.shapes and again.num_params == net.num_params
    assert to_notation(again) == text
    return text


def test_the_notes_first_example():
    net = Sequential([Conv2D(12, 3, P=1), ReLU(), MaxPool(2, 2), FC(10)], input_shape=(32, 32, 3))
    assert to_notation(net) == "INPUT[32x32x3] -> CONV3-12/S1/P1 -> RELU -> POOL2/S2 -> FC10"
    assert_round_trip(net)


def test_bare_pattern_is_written_out_explicitly():
    net = build("INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC",
                input="32x32x3", classes=10, N=1, M=2, K=1)
    assert to_notation(net) == ("INPUT[32x32x3] -> CONV3-32/S1/P1 -> RELU -> POOL2/S2 -> CONV3-64/S1/P1 -> RELU"
                                 " -> POOL2/S2 -> FC512 -> RELU -> FC10")
    assert_round_trip(net)


@pytest.mark.parametrize("layer, written, size", [  # size: the input's H and W, which the layer must tile
    (Conv2D(64, 3, P=1), "CONV3-64/S1/P1", 12),
    (Conv2D(96, 11, S=4), "CONV11-96/S4/P0", 15),
    (Conv2D(8, 3, S=2, P=2, dilation=2), "CONV3-8/S2/P2/D2", 15),
    (Conv2D(8, 3, P=1, bias=False), "CONV3-8/S1/P1/B0", 12),
    (Conv2D(8, (3, 5), S=(1, 2), P=(1, 2)), "CONV3x5-8/S1x2/P1x2", 15),
    (Conv2D(8, (3, 3), P=1), "CONV3x3-8/S1/P1", 12),  # a pair stays a pair
    (Conv2D(8, 3, S=2, fit="crop", bias=False), "CONV(F=3,K=8,S=2,P=0,bias=false,fit=crop)", 12),
    (Conv2D(8, 3, S=2, dilation=2, fit="pad"), "CONV(F=3,K=8,S=2,P=0,dilation=2,fit=pad)", 12),
    (MaxPool(2, 2), "POOL2/S2", 12),
    (MaxPool(3, 1, P=1), "POOL3/S1/P1", 12),
    (MaxPool(3, 2, fit="pad"), "POOL(F=3,S=2,fit=pad)", 12),
    (AvgPool(2), "AVGPOOL2/S2", 12),
    (L2Pool((2, 3), (2, 1)), "L2POOL2x3/S2x1", 12),
    (GlobalAvgPool(), "GAP", 12),
    (FC(4096), "FC4096", 12),
    (ReLU(), "RELU", 12),
    (Flatten(), "FLATTEN", 12),
    (BatchNorm(), "BN", 12),
    (BatchNorm(momentum=0.01), "BN(momentum=0.01)", 12),
    (BatchNorm(eps=1e-3, momentum=0.3), "BN(eps=0.001,momentum=0.3)", 12),
    (Dropout(0.5), "DROPOUT(0.5)", 12),
    (Dropout(0.1 + 0.2), "DROPOUT(0.30000000000000004)", 12),
    (LocallyConnected(4, 3, P=1), "LC3-4/S1/P1", 12),
    (LocallyConnected(4, 3, S=2, fit="crop"), "LC(F=3,K=4,S=2,P=0,fit=crop)", 12),
    (Inception(64, 96, 128, 16, 32, 32), "INCEPTION(64,96,128,16,32,32)", 12),
    (Residual([Conv2D(4, 3, P=1), ReLU()]), "RES{ CONV3-4/S1/P1 -> RELU }", 12),
    (Residual([Conv2D(4, 1)], [Conv2D(4, 1), BatchNorm()]), "RES{ CONV1-4/S1/P0 | CONV1-4/S1/P0 -> BN }", 12),
    (Concat([[Conv2D(2, 1)], [], [MaxPool(3, 1, P=1)]]), "CONCAT{ CONV1-2/S1/P0 | | POOL3/S1/P1 }", 12),
    (Concat([[], [Residual([ReLU()])]]), "CONCAT{ | RES{ RELU } }", 12),
])
def test_each_layer_is_written_exactly(layer, written, size):
    assert write_layer(layer) == written
    net = Sequential([layer], input_shape=(size, size, 4), allocate=False)
    assert_round_trip(net)


def test_a_config_dict_is_written_like_its_layer():
    assert write_layer({"type": "Conv2D", **Conv2D(8, 3, P=1).get_config()}) == "CONV3-8/S1/P1"
    assert write_layer({"type": "BatchNorm", "eps": 1e-5, "momentum": 0.1}) == "BN"


def test_mixed_network_round_trip():
    net = Sequential([
        Conv2D(16, 5, S=1, P=2, bias=False), BatchNorm(), ReLU(), MaxPool(3, 2, fit="pad"),
        Residual([Conv2D(16, 3, P=1), ReLU(), Conv2D(16, 3, P=1)]), ReLU(),
        Concat([[Conv2D(8, 1)], [Conv2D(4, 1), ReLU(), Conv2D(8, 3, P=2, dilation=2)], [], [AvgPool(3, 1, P=1)]]),
        Inception(4, 4, 8, 2, 4, 4), Residual([Conv2D(32, 3, S=2, P=1, fit="crop")], [Conv2D(32, 1, S=2, fit="crop")]),
        LocallyConnected(8, 3), L2Pool(2), GlobalAvgPool(), Flatten(), Dropout(0.25), FC(64), ReLU(), FC(10),
    ], input_shape=(31, 31, 3), allocate=False)
    text = assert_round_trip(net)
    assert text.startswith("INPUT[31x31x3] -> CONV5-16/S1/P2/B0 -> BN -> RELU -> POOL(F=3,S=2,fit=pad) -> RES{")


def test_empty_network():
    net = Sequential([], input_shape=(4, 5, 6))
    assert to_notation(net) == "INPUT[4x5x6]"
    assert_round_trip(net)


@pytest.mark.parametrize("name", sorted(zoo.ARCHITECTURES))
def test_zoo_round_trip(name):
    net = zoo.ARCHITECTURES[name](allocate=False)
    assert_round_trip(net)


def test_rebuilt_net_computes_the_same_with_the_same_seed():
    net = Sequential([Conv2D(4, 3, P=1), ReLU(), MaxPool(2, 2), FC(3)], input_shape=(8, 8, 2), seed=5)
    again = build(to_notation(net), seed=5)
    x = np.random.default_rng(0).random((2, 8, 8, 2), dtype=np.float32)
    np.testing.assert_array_equal(again.forward(x), net.forward(x))


def test_a_layer_without_a_keyword_is_a_spec_error():
    class Square(Layer):
        def output_shape(self, input_shape):
            return input_shape

    net = Sequential([ReLU(), Square()], input_shape=(2, 2, 1))
    with pytest.raises(SpecError, match="Square has no keyword in the notation"):
        to_notation(net)


def test_a_config_the_notation_cannot_hold_is_a_spec_error():
    with pytest.raises(SpecError, match="cannot be written"):
        write_layer({"type": "FC", "K": 3, "activation": "tanh"})


# -- random networks ---------------------------------------------------------------

small = st.integers(1, 3)
pairs = st.one_of(small, st.tuples(small, small))
fits = st.sampled_from([None, "pad", "crop"])


@st.composite
def conv_layers(draw):
    return Conv2D(draw(small), draw(pairs), S=draw(pairs), P=draw(st.one_of(st.integers(0, 2), st.tuples(
        st.integers(0, 2), st.integers(0, 2)))), dilation=draw(st.sampled_from([1, 2, (1, 2)])), fit=draw(fits),
        bias=draw(st.booleans()))


@st.composite
def pool_layers(draw):
    F = draw(st.integers(1, 3))
    return draw(st.sampled_from([MaxPool, AvgPool, L2Pool]))(F, draw(small), P=draw(st.integers(0, F // 2)),
                                                             fit=draw(fits))


simple_layers = st.one_of(
    conv_layers(), pool_layers(),
    st.builds(LocallyConnected, small, small, S=small, P=st.integers(0, 1), fit=fits),
    st.builds(FC, st.integers(1, 5)), st.builds(ReLU), st.builds(Flatten), st.builds(GlobalAvgPool),
    st.builds(BatchNorm, eps=st.floats(1e-9, 1.0), momentum=st.floats(0.0, 1.0)),
    st.builds(Dropout, st.floats(0.0, 0.99)),
    st.builds(Inception, small, small, small, small, small, small),
)


def layer_lists(layers, max_size=3):
    return st.lists(layers, max_size=max_size)


any_layers = st.recursive(
    simple_layers,
    lambda inner: st.one_of(
        st.builds(Residual, layer_lists(inner).filter(bool), st.one_of(st.none(), layer_lists(inner))),
        st.builds(Concat, st.lists(layer_lists(inner), min_size=1, max_size=3)),
    ),
    max_leaves=6,
)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(any_layers, max_size=5), st.tuples(st.integers(4, 9), st.integers(4, 9), st.integers(1, 3)))
def test_random_networks_round_trip(layers, input_shape):
    try:
        net = Sequential(layers, input_shape, allocate=False)
    except ShapeError:
        assume(False)
    assert_round_trip(net)
