"""Mini-batches, prediction and evaluation: the pieces the trainer is made of."""

from __future__ import annotations

import numpy as np

from ..ops.losses import LOSSES


def iterate_minibatches(n: int, batch_size: int, rng: np.random.Generator | None = None):
    """Index arrays of successive mini-batches over ``n`` examples, shuffled when ``rng`` is given."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start: start + batch_size]


def check_labelled(net, images, labels, what="training"):
    """Images that fit the network, one in-range integer label each; clear errors otherwise."""
    images = images if hasattr(images, "shape") else np.asarray(images)  # images streamed from disk stay there
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{what} data: {images.shape[0]} images but labels of shape {labels.shape}; "
                         "need one label each")
    if images.shape[1:] != net.input_shape:
        raise ValueError(f"{what} data: images are {images.shape[1:]} but the network expects {net.input_shape}")
    classes = net.output_shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{what} data: labels span {labels.min()}..{labels.max()} but the network has "
                         f"{classes} class scores")
    return images, labels


def predict(net, images, batch_size: int = 256, transform=None) -> np.ndarray:
    """Class scores ``(N, classes)`` for every image, in inference mode (no caches kept); a net ending in GAP's
    ``1 x 1 x classes`` gives them as rows all the same.

    ``transform`` (e.g. a normaliser) is applied to each batch first.
    """
    scores = []
    for index in iterate_minibatches(len(images), batch_size):
        batch = images[index] if transform is None else transform(images[index])
        scores.append(net.forward(batch, train=False).reshape(len(batch), -1))
    return np.concatenate(scores)


def class_weights(class_weight, labels) -> dict:
    """The loss's keyword for per-class weights ``(C,)``: ``{"weights": class_weight[labels]}``, or {} without."""
    return {} if class_weight is None else {"weights": np.asarray(class_weight)[np.asarray(labels)]}


def evaluate(net, images, labels, batch_size: int = 256, loss: str = "softmax", transform=None, class_weight=None):
    """``(mean loss, accuracy)`` of ``net`` on a labelled set; ``class_weight`` ``(C,)`` weighs the loss's mean."""
    images, labels = check_labelled(net, images, labels, "evaluation")
    scores = predict(net, images, batch_size, transform)
    value, _ = LOSSES[loss](scores, labels, **class_weights(class_weight, labels))
    return value, float((scores.argmax(axis=1) == labels).mean())
