"""Rotations, translations, colour jitter and cutout: each held to a naive per-pixel twin, seeded, and drawn
the same on resume and on both engines."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.data import (Augment, ColorJitter, Cutout, Dataset, HorizontalFlip, RandomCrop, RandomRotation,
                         RandomTranslation)
from volnet.data.augment import _warp


def naive_warp(x, angle, dy, dx):
    """Per output pixel: the inverse rotation about the centre, minus the shift, bilinear, 0 outside."""
    N, H, W, D = x.shape
    cy, cx = (H - 1) / 2, (W - 1) / 2
    out = np.zeros((H, W, D))
    for r in range(H):
        for c in range(W):
            y, z = r - cy - dy, c - cx - dx
            sr = math.cos(angle) * y - math.sin(angle) * z + cy
            sc = math.sin(angle) * y + math.cos(angle) * z + cx
            r0, c0 = math.floor(sr), math.floor(sc)
            for rr, cc in ((r0, c0), (r0, c0 + 1), (r0 + 1, c0), (r0 + 1, c0 + 1)):
                if 0 <= rr < H and 0 <= cc < W:
                    out[r, c] += x[0, rr, cc] * (1 - abs(sr - rr)) * (1 - abs(sc - cc))
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 3), st.floats(-3.2, 3.2), st.floats(-4, 4),
       st.floats(-4, 4), st.integers(0, 2**31))
def test_warp_equals_its_naive_twin(H, W, D, angle, dy, dx, seed):
    x = np.random.default_rng(seed).random((1, H, W, D))
    got = _warp(x, np.array([angle]), np.array([[dy, dx]]))
    np.testing.assert_allclose(got[0], naive_warp(x, angle, dy, dx), rtol=0, atol=1e-12)


def test_rotation_by_90_degrees_turns_clockwise_as_shown_and_whole_shifts_move_pixels():
    x = np.random.default_rng(0).random((2, 5, 5, 1))
    np.testing.assert_allclose(_warp(x, np.full(2, np.pi / 2), np.zeros((2, 2))), np.rot90(x, -1, axes=(1, 2)),
                               atol=1e-12)
    moved = _warp(x, np.zeros(2), np.array([[1.0, -2.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(moved[0, 1:, :3], x[0, :-1, 2:])  # down 1, left 2
    assert not moved[0, 0].any() and not moved[0, :, 3:].any()  # zeros where it left the frame
    np.testing.assert_array_equal(moved[1], x[1])


def test_rotation_and_translation_draw_per_image_from_the_generator():
    x = np.random.default_rng(1).random((6, 7, 7, 1)).astype(np.float32)
    angles = np.deg2rad(np.random.default_rng(5).uniform(-15, 15, size=6))
    np.testing.assert_array_equal(RandomRotation(15)(x, np.random.default_rng(5)),
                                  _warp(x, angles, np.zeros((6, 2))))
    shifts = np.random.default_rng(5).uniform(-3, 3, size=(6, 2))
    np.testing.assert_array_equal(RandomTranslation(3)(x, np.random.default_rng(5)), _warp(x, np.zeros(6), shifts))
    assert RandomRotation(15)(x, np.random.default_rng(5)).dtype == np.float32
    np.testing.assert_array_equal(RandomRotation(0)(x, np.random.default_rng(5)), x)


@pytest.mark.parametrize("D", [1, 3])
def test_color_jitter_follows_its_formula_image_by_image(D):
    x = np.random.default_rng(2).random((4, 5, 6, D)).astype(np.float32)
    got = ColorJitter(0.4)(x, np.random.default_rng(9))
    factors = np.random.default_rng(9).uniform(0.6, 1.4, size=(3, 4))
    for i in range(4):
        b, c, s = factors[:, i]
        image = x[i].astype(np.float64) * b
        image = (image - image.mean()) * c + image.mean()
        if D == 3:
            gray = image.mean(axis=2, keepdims=True)
            image = (image - gray) * s + gray
        np.testing.assert_allclose(got[i], np.clip(image, 0, 1), rtol=0, atol=1e-6)
    assert got.min() >= 0 and got.max() <= 1


def test_cutout_zeroes_one_square_per_image_clipped_at_the_borders():
    x = np.ones((20, 6, 7, 2), np.float32)
    got = Cutout(3)(x, np.random.default_rng(4))
    draws = np.random.default_rng(4)
    tops, lefts = draws.integers(0, 6, size=20) - 1, draws.integers(0, 7, size=20) - 1
    for i in range(20):
        expected = np.ones((6, 7))
        for r in range(6):
            for c in range(7):
                if tops[i] <= r < tops[i] + 3 and lefts[i] <= c < lefts[i] + 3:
                    expected[r, c] = 0
        np.testing.assert_array_equal(got[i, :, :, 0], expected)
        np.testing.assert_array_equal(got[i, :, :, 1], expected)


def test_configs_round_trip_inputs_untouched_and_bad_arguments():
    augment = Augment([RandomCrop(1), HorizontalFlip(), RandomRotation(12), RandomTranslation(1.5), ColorJitter(0.3),
                       Cutout(4)])
    again = Augment.from_config(augment.get_config())
    x = np.random.default_rng(3).random((5, 8, 8, 3)).astype(np.float32)
    copy = x.copy()
    np.testing.assert_array_equal(augment(x, np.random.default_rng(1)), again(x, np.random.default_rng(1)))
    np.testing.assert_array_equal(x, copy)
    for make, message in ((lambda: RandomRotation(181), "degrees"), (lambda: RandomTranslation(-1), "pixels"),
                          (lambda: ColorJitter(1.0), "strength"), (lambda: Cutout(2.5), "size")):
        with pytest.raises(ValueError, match=message):
            make()


def _trainer(engine=None, out_dir=None, callbacks=(), dtype="float32"):
    from volnet import Sequential
    from volnet.layers import FC, Conv2D, ReLU
    from volnet.optim import make_optimizer
    from volnet.train import Trainer

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    images = (rng.random((40, 8, 8, 3)) * 0.3 + 0.7 * (labels[:, None, None, None] == np.arange(3))).clip(0, 1)
    data = Dataset(images.astype(np.float32), labels, ("a", "b", "c"))
    net = Sequential([Conv2D(3, 3, P=1), ReLU(), FC(3)], input_shape=(8, 8, 3), seed=1, dtype=dtype)
    augment = Augment([RandomRotation(20), RandomTranslation(1.5), ColorJitter(0.3), Cutout(3)])
    return Trainer(net, make_optimizer("adam", net.params(), lr=0.01), data, epochs=2, batch_size=16, seed=5,
                   augment=augment, engine=engine, out_dir=out_dir, callbacks=callbacks)


class Recorder:
    """Wraps an engine's forward to keep every batch it is given."""

    def __init__(self, trainer):
        self.batches = []
        forward = trainer.engine.forward

        def record(images, labels, loss):
            self.batches.append(images.copy())
            return forward(images, labels, loss)

        trainer.engine.forward = record


def test_augmented_batches_are_the_same_on_resume(tmp_path):
    from volnet.train import Callback, Trainer, TrainingInterrupted

    whole = _trainer()
    seen = Recorder(whole)
    whole.run()

    class StopAt(Callback):
        def on_batch(self, progress):
            if (progress.epoch, progress.batch) == (1, 2):
                cut.request_stop()

    cut = _trainer(out_dir=tmp_path, callbacks=[StopAt()])
    first = Recorder(cut)
    with pytest.raises(TrainingInterrupted):
        cut.run()
    resumed = Trainer.from_checkpoint(tmp_path / "checkpoint.safetensors", cut.train)
    rest = Recorder(resumed)
    resumed.run()
    batches = first.batches + rest.batches
    assert len(batches) == len(seen.batches) == 6
    for got, expected in zip(batches, seen.batches):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_augmented_batches_are_the_same_on_both_engines():
    torch_engine = pytest.importorskip("volnet.interop.torch_engine")
    runs = []
    for engine in (None, torch_engine.TorchEngine("cpu")):
        trainer = _trainer(engine, dtype="float64")
        recorder = Recorder(trainer)
        trainer.run()
        runs.append(recorder.batches)
    assert len(runs[0]) == len(runs[1]) == 6
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
