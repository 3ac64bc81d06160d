"""FC <-> CONV conversion: the notes' identities, on real weights."""

import numpy as np
import pytest

from volnet import Sequential, ShapeError
from volnet.convert import conv_to_fc, fc_to_conv, score_map_geometry
from volnet.layers import FC, BatchNorm, Conv2D, Dropout, Flatten, MaxPool, ReLU


def unpadded_net(dtype=np.float64):
    """CONV layers without zero padding, so every crop sees exactly what the converted net sees."""
    return Sequential([Conv2D(4, 3), ReLU(), MaxPool(2, 2), Conv2D(6, 3, S=1), ReLU(), Flatten(), FC(8), ReLU(),
                       Dropout(0.5), FC(3)], input_shape=(12, 12, 2), dtype=dtype, seed=3)


def test_notes_example_fc4096_on_7x7x512_becomes_conv_f7_k4096():
    net = Sequential([FC(64), ReLU(), FC(10)], input_shape=(7, 7, 512), seed=0)
    converted = fc_to_conv(net)
    first, second = converted[0], converted[2]
    assert isinstance(first, Conv2D) and (first.K, first.F, first.S, first.P) == (64, 7, 1, 0)
    assert isinstance(second, Conv2D) and (second.K, second.F) == (10, 1)
    assert converted.shapes[0] == (1, 1, 64) and converted.output_shape == (1, 1, 10)
    assert converted.num_params == net.num_params


def test_same_scores_on_the_original_input():
    net = unpadded_net(np.float32)
    converted = fc_to_conv(net)
    x = np.random.default_rng(0).random((4, 12, 12, 2), dtype=np.float32)
    np.testing.assert_allclose(converted.forward(x).reshape(4, 3), net.forward(x), rtol=1e-5, atol=1e-5)


def test_batchnorm_after_fc_converts_with_its_statistics():
    net = Sequential([Conv2D(3, 3), ReLU(), FC(5), BatchNorm(), ReLU(), FC(2)], input_shape=(6, 6, 1),
                     dtype=np.float64)
    rng = np.random.default_rng(1)
    net.forward(rng.random((8, 6, 6, 1)), train=True)  # move the running averages off their start
    x = rng.random((3, 6, 6, 1))
    np.testing.assert_allclose(fc_to_conv(net).forward(x).reshape(3, 2), net.forward(x), atol=1e-12)


def test_larger_input_gives_a_score_map_equal_to_every_crop():
    net = unpadded_net()
    (crop_h, crop_w), (sh, sw) = score_map_geometry(net)
    assert (crop_h, crop_w, sh, sw) == (12, 12, 2, 2)
    big = fc_to_conv(net, input_shape=(20, 16, 2))
    image = np.random.default_rng(2).random((1, 20, 16, 2))
    scores = big.forward(image)[0]
    assert scores.shape == (5, 3, 3)
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            crop = image[:, i * sh: i * sh + crop_h, j * sw: j * sw + crop_w]
            np.testing.assert_allclose(scores[i, j], net.forward(crop)[0], atol=1e-12)


def test_input_that_does_not_slide_evenly_names_valid_sizes():
    with pytest.raises(ShapeError, match=r"use sizes 12 \+ k\*2 by 12 \+ k\*2 \(e.g. 14x14x2\)"):
        fc_to_conv(unpadded_net(), input_shape=(21, 21, 2))


@pytest.mark.parametrize("F, S, P, dilation", [(3, 1, 1, 1), (3, 2, 0, 1), (2, 1, 0, 2), (5, 2, 2, 1)])
def test_conv_as_a_dense_matrix(F, S, P, dilation):
    net = Sequential([Conv2D(3, F, S=S, P=P, dilation=dilation)], input_shape=(7, 7, 2), dtype=np.float64, seed=4)
    net.params()[1].value[...] = np.arange(3)  # non-zero biases
    matrix, bias = conv_to_fc(net[0], (7, 7, 2))
    x = np.random.default_rng(5).random((2, 7, 7, 2))
    np.testing.assert_allclose(x.reshape(2, -1) @ matrix + bias, net.forward(x).reshape(2, -1), atol=1e-12)
    assert (matrix == 0).mean() > 0.5  # local connectivity: mostly zero


def test_dense_matrix_blocks_repeat_the_shared_filter():
    layer = Sequential([Conv2D(2, 3)], input_shape=(5, 5, 1), dtype=np.float64)[0]
    matrix, _ = conv_to_fc(layer, (5, 5, 1))
    blocks = matrix.reshape(5, 5, 1, 3, 3, 2)
    w = layer.params()[0].value
    for i in range(3):
        for j in range(3):
            np.testing.assert_array_equal(blocks[i: i + 3, j: j + 3, :, i, j, :], w)
    assert (matrix == 0).mean() == pytest.approx(1 - 9 / 25)
