"""Random crop, horizontal flip, per-channel normalisation, and their composition."""

import json
import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet import Sequential
from volnet.data import Augment, Dataset, HorizontalFlip, Normalizer, RandomCrop
from volnet.layers import FC
from volnet.optim import make_optimizer
from volnet.train import Trainer


def batch(rng, n=6, h=5, w=7, d=3):
    return rng.random((n, h, w, d), dtype=np.float32)


@pytest.mark.parametrize("pad", [1, 3, (2, 0)])
def test_crop_is_a_window_of_the_zero_padded_image(rng, pad):
    x = batch(rng, n=20)
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    out = RandomCrop(pad)(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    offsets = set()
    for i in range(len(x)):  # the naive check: search every offset for the one that produced this crop
        found = [(dy, dx) for dy in range(2 * ph + 1) for dx in range(2 * pw + 1)
                 if np.array_equal(out[i], padded[i, dy: dy + 5, dx: dx + 7])]
        assert found, f"image {i} is not a {5}x{7} window of its padded self"
        offsets.add(found[0])
    assert len(offsets) > 1  # offsets are drawn per image


def test_crop_with_no_padding_is_identity(rng):
    x = batch(rng)
    np.testing.assert_array_equal(RandomCrop(pad=0)(x, rng), x)


def test_flip_twice_is_identity_and_flips_along_width(rng):
    x = batch(rng)
    flip = HorizontalFlip(p=1.0)
    np.testing.assert_array_equal(flip(x, rng), x[:, :, ::-1])
    np.testing.assert_array_equal(flip(flip(x, rng), rng), x)
    np.testing.assert_array_equal(HorizontalFlip(p=0.0)(x, rng), x)


def test_flip_half_of_the_images(rng):
    x = batch(rng, n=400)
    out = HorizontalFlip()(x, np.random.default_rng(7))
    kept = np.all(out == x, axis=(1, 2, 3))
    flipped = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(kept ^ flipped)  # every image is either itself or its mirror image, never mixed
    assert 150 < flipped.sum() < 250
    again = HorizontalFlip()(x, np.random.default_rng(7))
    np.testing.assert_array_equal(again, out)


def test_normalizer_gives_zero_mean_unit_std_per_channel(rng):
    x = rng.normal(loc=[0.2, 0.5, 0.9], scale=[0.05, 0.2, 0.01], size=(50, 8, 8, 3)).astype(np.float32)
    normalise = Normalizer.fit(x)
    np.testing.assert_allclose(normalise.mean, [0.2, 0.5, 0.9], atol=0.01)
    out = normalise(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-4)


def test_normalizer_config_round_trip(rng):
    x = batch(rng)
    normalise = Normalizer.fit(x)
    config = json.loads(json.dumps(normalise.get_config()))
    assert len(config["mean"]) == len(config["std"]) == 3
    np.testing.assert_array_equal(Normalizer.from_config(config)(x), normalise(x))


def test_normalizer_constant_channel_and_bad_input(rng):
    x = np.zeros((2, 3, 3, 2), np.float32)
    x[..., 1] = rng.random((2, 3, 3))
    normalise = Normalizer.fit(x)
    assert normalise.std[0] == 1 and np.all(np.isfinite(normalise(x)))
    with pytest.raises(ValueError, match="fitted on 2 channels, got a batch with D = 3"):
        normalise(np.zeros((1, 3, 3, 3)))
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalizer([0.0], [0.0])


def test_same_seed_same_result_and_input_untouched(rng):
    x = batch(rng, n=16)
    before = x.copy()
    augment = Augment([RandomCrop(pad=2), HorizontalFlip(), Normalizer.fit(x)])
    first = augment(x, np.random.default_rng(3))
    np.testing.assert_array_equal(first, augment(x, np.random.default_rng(3)))
    assert not np.array_equal(first, augment(x, np.random.default_rng(4)))
    np.testing.assert_array_equal(x, before)
    assert first.shape == x.shape and first.dtype == np.float32


def test_augment_config_round_trip(rng):
    x = batch(rng)
    augment = Augment([RandomCrop(pad=(1, 2)), HorizontalFlip(p=0.3), Normalizer.fit(x)])
    config = json.loads(json.dumps(augment.get_config()))
    assert [t["name"] for t in config["transforms"]] == ["RandomCrop", "HorizontalFlip", "Normalizer"]
    rebuilt = Augment.from_config(config)
    np.testing.assert_array_equal(rebuilt(x, np.random.default_rng(0)), augment(x, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="unknown transform 'Blur'"):
        Augment.from_config({"transforms": [{"name": "Blur"}]})


def test_bad_arguments(rng):
    with pytest.raises(TypeError, match="np.random.default_rng"):
        RandomCrop(2)(batch(rng), 0)
    with pytest.raises(ValueError, match=r"\(N, H, W, D\)"):
        HorizontalFlip()(np.zeros((4, 4)), rng)
    with pytest.raises(ValueError, match="pad must be >= 0"):
        RandomCrop(-1)
    with pytest.raises(ValueError, match="probability"):
        HorizontalFlip(p=2)


def padded_crop(x, pad, rng):
    """The naive reference: pad the whole batch with zeros, then cut each window out (draws as RandomCrop's)."""
    N, H, W, _ = x.shape
    ph, pw = pad
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    dy, dx = rng.integers(0, 2 * ph + 1, size=N), rng.integers(0, 2 * pw + 1, size=N)
    return np.stack([padded[i, dy[i]: dy[i] + H, dx[i]: dx[i] + W] for i in range(N)])


@st.composite
def crop_settings(draw):
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    return (draw(st.integers(1, 4)), H, W, draw(st.integers(1, 3))), (draw(st.integers(0, H - 1)),
                                                                        draw(st.integers(0, W - 1)))


@settings(max_examples=60, deadline=None)
@given(setting=crop_settings(), seed=st.integers(0, 2**32 - 1))
def test_crop_equals_the_padded_reference(setting, seed):
    shape, pad = setting
    x = np.random.default_rng(seed).random(shape, dtype=np.float32) + 1  # no zeros of its own
    out = RandomCrop(pad)(x, np.random.default_rng(seed))
    np.testing.assert_array_equal(out, padded_crop(x, pad, np.random.default_rng(seed)))
    assert out.dtype == x.dtype


def test_crop_memory_does_not_grow_with_the_pad(rng):
    x = batch(rng, n=2, h=300, w=300, d=1)  # 720 KB; padded by 299 it would be 6.4 MB
    tracemalloc.start()
    try:
        RandomCrop(299)(x, rng)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * x.nbytes


@pytest.mark.parametrize("pad, shape", [(100000, (28, 28, 1)), (5, (5, 9, 3)), ((2, 4), (8, 4, 1))])
def test_pad_as_large_as_the_image_is_refused(pad, shape):
    with pytest.raises(ValueError, match=rf"^--crop-pad {re.escape(str(pad))} \(RandomCrop pad\) must be smaller "
                                         rf"than the image's height and width, {shape[0]}x{shape[1]}: a larger pad "
                                         rf"lets a crop hold nothing but padding; use --crop-pad {min(shape[:2]) - 1} "
                                         r"or less$"):
        Augment([HorizontalFlip(), RandomCrop(pad)]).check(shape)
    with pytest.raises(ValueError, match="--crop-pad"):
        RandomCrop(pad)(np.zeros((1, *shape)), np.random.default_rng(0))
    RandomCrop(min(shape[:2]) - 1).check(shape)  # one less is fine


def test_trainer_refuses_a_crop_pad_before_training(tmp_path):
    images = np.zeros((4, 6, 6, 1), np.float32)
    data = Dataset(images, np.array([0, 1, 0, 1]), ("a", "b"))
    net = Sequential([FC(2)], input_shape=(6, 6, 1), seed=0)
    optimizer = make_optimizer("sgd", net.params(), lr=0.1)
    with pytest.raises(ValueError, match=r"--crop-pad 6 .* 6x6"):
        Trainer(net, optimizer, data, augment=Augment([RandomCrop(6)]), out_dir=tmp_path)
    assert not any(tmp_path.iterdir())
