"""Layers: objects that hold parameters and gradients and call a kernel from ``volnet.ops``."""

from .base import LAYER_TYPES, Costs, Keyword, Layer, Param, layer_config, layer_from_config
from .conv import Conv2D
from .containers import Concat, Inception, Residual
from .dense import FC, Flatten, ReLU
from .local import LocallyConnected
from .norm import BatchNorm, Dropout
from .pool import AvgPool, GlobalAvgPool, L2Pool, MaxPool

__all__ = ["Layer", "Param", "Costs", "Keyword", "LAYER_TYPES", "layer_config", "layer_from_config", "Conv2D",
           "LocallyConnected", "MaxPool", "AvgPool", "L2Pool", "FC", "ReLU", "Flatten", "BatchNorm", "Dropout",
           "GlobalAvgPool", "Residual", "Concat", "Inception"]
