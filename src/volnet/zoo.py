"""Named architectures for the command line: ``volnet train --arch lenet``.

Each entry builds a :class:`~volnet.Sequential` for a given input volume and
number of classes.
"""

from __future__ import annotations

from .layers import FC, Conv2D, MaxPool, ReLU
from .net import Sequential


def seed_layout(input_shape, classes=10, seed=0):
    """The notes' first example: ``INPUT -> CONV -> RELU -> POOL -> FC`` with 12 filters.

    CONV F=5, P=2 keeps the spatial size (32x32x3 -> 32x32x12 on CIFAR-10),
    POOL 2x2/2 halves it, FC computes the class scores.
    """
    return Sequential([Conv2D(12, 5, P=2), ReLU(), MaxPool(2, 2), FC(classes)], input_shape, seed=seed)


def lenet(input_shape, classes=10, seed=0):
    """A LeNet-style net: ``[CONV5 -> RELU -> POOL2]*2 -> FC -> RELU -> FC`` (the demo's net).

    LeNet-5's layout (CONV/POOL pairs, then FC layers) with ReLU and max
    pooling, and 16/32 filters instead of 6/16.
    """
    return Sequential([Conv2D(16, 5, P=2), ReLU(), MaxPool(2, 2),
                       Conv2D(32, 5, P=2), ReLU(), MaxPool(2, 2),
                       FC(128), ReLU(), FC(classes)], input_shape, seed=seed)


def cifar_reference(input_shape=(32, 32, 3), classes=10, seed=0):
    """``INPUT -> [CONV3-32 -> RELU]*2 -> POOL2 -> [CONV3-64 -> RELU]*2 -> POOL2 -> FC512 -> RELU -> FC``."""
    return Sequential([Conv2D(32, 3, P=1), ReLU(), Conv2D(32, 3, P=1), ReLU(), MaxPool(2, 2),
                       Conv2D(64, 3, P=1), ReLU(), Conv2D(64, 3, P=1), ReLU(), MaxPool(2, 2),
                       FC(512), ReLU(), FC(classes)], input_shape, seed=seed)


ARCHITECTURES = {"seed": seed_layout, "lenet": lenet, "cifar-ref": cifar_reference}


def build_named(name: str, input_shape, classes: int = 10, seed: int = 0) -> Sequential:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; available: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](input_shape, classes, seed=seed)
