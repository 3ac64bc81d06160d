"""A toy data set and a callback that the training tests share (importable: pytest's ``pythonpath`` holds
tests/)."""

from __future__ import annotations

import numpy as np

from volnet.data import Dataset
from volnet.train import Callback

CLASSES = ("top", "bottom", "none")


def toy_data(n: int = 96, seed: int = 0, shape=(8, 8, 1), noisy: bool = False) -> Dataset:
    """``n`` images of ``shape``: a bright top half is class 0, a bright bottom half class 1, neither class 2.

    ``noisy``: the labels are drawn again, unrelated to the images, so validation figures wander (a run
    that should stop early).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.random((n, *shape), dtype=np.float32) * 0.3
    images[labels == 0, : shape[0] // 2] += 0.7
    images[labels == 1, shape[0] // 2:] += 0.7
    if noisy:
        labels = rng.integers(0, 3, n)
    return Dataset(images, labels, CLASSES)


class StopAt(Callback):
    """Asks the trainer in ``box[0]`` to stop after batch ``batch`` of epoch ``epoch`` (the trainer is put in the
    box after it is built with this callback), as Ctrl-C would."""

    def __init__(self, box, epoch, batch):
        self.box, self.epoch, self.batch = box, epoch, batch

    def on_batch(self, progress):
        if (progress.epoch, progress.batch) == (self.epoch, self.batch):
            self.box[0].request_stop()
