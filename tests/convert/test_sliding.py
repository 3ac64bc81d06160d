"""Sliding-window evaluation with the converted network."""

import numpy as np
import pytest

from volnet import Sequential
from volnet.convert import slide, sliding_size
from volnet.layers import FC, Conv2D, MaxPool, ReLU
from volnet.viz import heatmap_overlay


def net():
    return Sequential([Conv2D(3, 3), ReLU(), MaxPool(2, 2), FC(4)], input_shape=(10, 10, 1), dtype=np.float64)


def test_sliding_size_is_crop_plus_whole_strides():
    assert sliding_size(net(), 1.0) == (10, 10)
    assert sliding_size(net(), 1.6) == (16, 16)  # 10 + (0.6*10/2)*2
    with pytest.raises(ValueError, match="scale"):
        sliding_size(net(), 0.5)


def test_slide_averages_the_scores_of_every_crop():
    model = net()
    images = np.random.default_rng(0).random((2, 14, 12, 1))
    score_map, mean = slide(model, images)
    assert score_map.shape == (2, 3, 2, 4)
    crops = [model.forward(images[:, 2 * i: 2 * i + 10, 2 * j: 2 * j + 10]) for i in range(3) for j in range(2)]
    np.testing.assert_allclose(mean, np.mean(crops, axis=0), atol=1e-12)


def test_heatmap_overlay_paints_high_scores_red():
    image = np.zeros((4, 4, 1))
    picture = heatmap_overlay(image, np.array([[0.0, 1.0], [0.0, 0.0]]), alpha=1.0)
    assert picture.shape == (4, 4, 3) and picture.dtype == np.uint8
    assert picture[0, 3, 0] == 255 and picture[3, 0, 0] == 0 and not picture[..., 1:].any()
