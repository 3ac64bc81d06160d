"""A minimal training loop: mini-batches, forward, loss, backward, optimizer step.

Nothing here prints: progress goes to an optional callback, so the command
line (or a notebook) decides how to show it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..ops.losses import LOSSES


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    seconds: float
    images_per_second: float


def iterate_minibatches(n: int, batch_size: int, rng: np.random.Generator | None = None):
    """Index arrays of successive mini-batches over ``n`` examples, shuffled when ``rng`` is given."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start: start + batch_size]


def _check_data(net, images, labels):
    images, labels = np.asarray(images), np.asarray(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"got {images.shape[0]} images but labels of shape {labels.shape}; need one label each")
    classes = net.output_shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels span {labels.min()}..{labels.max()} but the network has {classes} class scores")
    return images, labels


def fit(net, images, labels, optimizer, *, epochs: int = 1, batch_size: int = 64, loss: str = "softmax",
        seed: int = 0, on_epoch=None) -> list[EpochStats]:
    """Train ``net`` in place for ``epochs`` passes over the data; returns per-epoch statistics.

    ``on_epoch(stats)`` is called after every epoch (for progress output).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    images, labels = _check_data(net, images, labels)
    loss_fn, rng, history = LOSSES[loss], np.random.default_rng(seed), []
    for epoch in range(1, epochs + 1):
        start, total_loss, correct = time.perf_counter(), 0.0, 0
        for batch in iterate_minibatches(len(images), batch_size, rng):
            scores = net.forward(images[batch], train=True)
            value, dscores = loss_fn(scores, labels[batch])
            net.backward(dscores, input_grad=False)
            optimizer.step()
            total_loss += value * len(batch)
            correct += int((scores.argmax(axis=1) == labels[batch]).sum())
        seconds = time.perf_counter() - start
        stats = EpochStats(epoch, total_loss / len(images), correct / len(images), seconds, len(images) / seconds)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return history


def predict(net, images, batch_size: int = 256) -> np.ndarray:
    """Class scores for every image, in inference mode (no caches kept)."""
    return np.concatenate([net.forward(images[b], train=False)
                           for b in iterate_minibatches(len(images), batch_size)])


def evaluate(net, images, labels, batch_size: int = 256, loss: str = "softmax") -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``net`` on a labelled set."""
    images, labels = _check_data(net, images, labels)
    scores = predict(net, images, batch_size)
    value, _ = LOSSES[loss](scores, labels)
    return value, float((scores.argmax(axis=1) == labels).mean())
