"""Layers: objects that hold parameters and gradients and call a kernel from ``volnet.ops``."""

from .base import LAYER_TYPES, Layer, Param, layer_from_config
from .conv import Conv2D
from .dense import FC, Flatten, ReLU
from .norm import BatchNorm, Dropout
from .pool import AvgPool, L2Pool, MaxPool

__all__ = ["Layer", "Param", "LAYER_TYPES", "layer_from_config", "Conv2D", "MaxPool", "AvgPool", "L2Pool",
           "FC", "ReLU", "Flatten", "BatchNorm", "Dropout"]
