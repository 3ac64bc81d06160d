"""A path of layers in inference as a list of steps, one per fused group, worked out once per batch shape.

``Sequential.forward(x)`` in inference runs the same layers on batches of the same shape call after call. At
batch 1 the arithmetic is small and the bookkeeping around it (each layer's checks, geometry, plan, kernel
choice and fusions) took most of the time: LeNet 154 us a pass, 51 of them its kernels (the Intel Xeon; 88-95
with the plan). So the path is turned, once, into steps ``x -> out``: a CONV, POOL or FC (``inference_step``)
keeps only what must happen at each call (padding, the output's allocation, the kernel; the parameters read
then, so that training between two passes is seen), a Residual or Concat runs its paths' steps, and every
other layer runs its ``forward`` as :func:`~volnet.layers.paths.forward_layers` would. The steps compute
exactly what ``forward_layers`` computes (tests/layers/test_inference.py).
"""

from __future__ import annotations

import functools

import numpy as np

from .base import Layer
from .paths import forward_group, fused_groups


def inference_steps(layers: list[Layer], batch_shape: tuple, dtype, workers) -> list:
    """The steps of ``layers`` (a path) in inference on batches of ``batch_shape`` and ``dtype`` under ``workers``
    (the network pass's :class:`volnet.ops.threads.Workers`): functions ``x -> out``, first to last, one per
    group :func:`~volnet.layers.paths.fused_groups` fuses. A max pool after a CONV runs in the CONV's step where
    its windows tile the CONV's output (and the CONV runs its own step), else in a step of its own."""
    steps, shape, dtype = [], tuple(batch_shape), np.dtype(dtype)
    for layer, norm, relu, pool in fused_groups(layers, False, None, pools=True):
        after = (shape[0], *layer.output_shape(shape[1:]))
        if pooled_size(layer, pool, after[1:]):
            steps.append(_inference_step(layer)(shape, dtype, workers, norm, relu, pool))
        else:
            steps.append(_step(layer, shape, dtype, workers, norm, relu))
            if pool is not None:  # not fused after all: a step of its own
                steps.append(_step(pool, after, dtype, workers, None, None))
        shape = after if pool is None else (after[0], *pool.output_shape(after[1:]))
    return steps


def pooled_size(layer, pool, output_shape) -> int | None:
    """The window of the max pool ``pool`` (from :func:`~volnet.layers.paths.fused_groups`, or None) that
    ``layer``'s inference step pools, its output of ``output_shape`` ``(H, W, D)``: where the layer runs its own
    step and the windows tile that output; else None (the memory analysis asks the same)."""
    if pool is None or _inference_step(layer) is None:
        return None
    size = pool.fused_pool_size
    return size if output_shape[0] % size == output_shape[1] % size == 0 else None


def _step(layer, shape, dtype, workers, norm, relu):
    """``layer``'s step: its ``inference_step`` where it runs one, else its forward (fused as given)."""
    prepare = _inference_step(layer)
    return (prepare(shape, dtype, workers, norm, relu) if prepare
            else functools.partial(_forward, layer, norm, relu, workers=workers))


def _inference_step(layer):
    """The layer's ``inference_step``, where the class that defines it also defines the ``forward`` the layer
    runs: a subclass with a ``forward`` of its own (a user's variation of a CONV) runs that forward instead."""
    for klass in type(layer).__mro__:
        if "inference_step" in vars(klass):
            return layer.inference_step if type(layer).forward is klass.forward else None
    return None


def _forward(layer, norm, relu, x, workers):
    return forward_group(layer, norm, relu, x, False, workers)


def run_steps(steps: list, layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """``x`` through ``steps`` (:func:`inference_steps` of ``layers``). Like a forward pass in inference, it
    first drops what any of the layers kept from an earlier training forward."""
    for layer in layers:
        layer._cache = None
    for step in steps:
        x = step(x)
    return x
