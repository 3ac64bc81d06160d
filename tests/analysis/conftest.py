"""Shared by the analysis tests: VGG-16 as layer objects, the small net of the memory test, a memory probe.

* ``vgg16_layers()``  the notes' VGG-16, unbuilt: ``INPUT[224x224x3] -> [CONV3-64]x2 -> POOL2 ->
  [CONV3-128]x2 -> POOL2 -> [CONV3-256]x3 -> POOL2 -> [CONV3-512]x3 -> POOL2 -> [CONV3-512]x3 ->
  POOL2 -> FC4096 -> FC4096 -> FC1000``, a RELU after every CONV and the first two FCs.
* ``small_layers()``  ``INPUT[32x32x3] -> CONV3-16 -> RELU -> POOL2 -> CONV3-32 -> RELU -> POOL2 -> FC10``.
* ``measure``         ``measure(net, batch, ...)`` runs real passes under tracemalloc (NumPy reports
  its allocations to it) and returns peak and kept bytes, see :func:`_measure`.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from volnet import Sequential
from volnet.layers import FC, Conv2D, MaxPool, ReLU
from volnet.ops import softmax_cross_entropy
from volnet.optim import make_optimizer

VGG16_STAGES = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


def _vgg16_layers():
    layers = []
    for filters, convs in VGG16_STAGES:
        for _ in range(convs):
            layers += [Conv2D(filters, 3, P=1), ReLU()]
        layers.append(MaxPool(2, 2))
    return layers + [FC(4096), ReLU(), FC(4096), ReLU(), FC(1000)]


def _small_layers():
    return [Conv2D(16, 3, P=1), ReLU(), MaxPool(2, 2), Conv2D(32, 3, P=1), ReLU(), MaxPool(2, 2), FC(10)]


@pytest.fixture
def vgg16_layers():
    return _vgg16_layers


@pytest.fixture
def small_layers():
    return _small_layers


def _measure(net: Sequential, batch: int, *, optimizer: str | None = None, seed: int = 0) -> dict:
    """Bytes a real network allocates, measured with tracemalloc.

    Two warm-up steps run first (traced, so that freeing their arrays is seen),
    so gradients and optimizer state exist as in any step after the first.
    Returns, each relative to the moment just before the measured forward
    pass (data, weights, gradients and optimizer state already allocated):

    * ``train_forward_peak``, ``train_kept`` (alive after ``forward(train=True)``),
      ``backward_peak`` (during ``backward``, including the kept caches);
    * ``inference_peak`` (during ``forward(train=False)``);
    * ``step_total``: the absolute peak of one whole step (forward, loss,
      backward, optimizer step) counting everything allocated since before the
      network was built: weights, gradients, optimizer state, data.
    """
    def stepper(net):
        rng = np.random.default_rng(seed)
        opt = make_optimizer(optimizer or "sgd", net.params(), lr=1e-3)
        x = rng.standard_normal((batch, *net.input_shape)).astype(net.dtype)
        y = rng.integers(0, net.output_shape[-1], batch)

        def step():
            scores = net.forward(x, train=True)
            _, dscores = softmax_cross_entropy(scores, y)
            net.backward(dscores, input_grad=False)
            opt.step()
            return scores, dscores

        return step, x

    # One untraced step and inference pass of a copy first: every kernel this net takes is compiled (or loaded
    # from Numba's disk cache) before tracing starts, whatever ran earlier in the process; what a compile
    # retains is no layer's (BatchNorm's inference kernel, compiled in the traced pass from an empty cache,
    # had counted 1.4 MB into batchnorm-dropout's inference peak).
    copy = Sequential.from_config(net.get_config())
    warm_step, warm_x = stepper(copy)
    warm_step()
    copy.forward(warm_x, train=False)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        net = Sequential.from_config(net.get_config())  # fresh weights, allocated under tracing
        step, x = stepper(net)
        step(), step()
        result = {}
        tracemalloc.reset_peak()
        kept = step()
        result["step_total"] = tracemalloc.get_traced_memory()[1] - start
        del kept

        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        scores = net.forward(x, train=True)
        current, peak = tracemalloc.get_traced_memory()
        result["train_forward_peak"], result["train_kept"] = peak - base, current - base
        tracemalloc.reset_peak()
        net.backward(np.ones_like(scores), input_grad=False)
        result["backward_peak"] = tracemalloc.get_traced_memory()[1] - base
        del scores

        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = net.forward(x, train=False)
        result["inference_peak"] = tracemalloc.get_traced_memory()[1] - base
        del out
        return result
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="session")
def measure():
    # A throwaway step first: the first use of some code paths in a process
    # allocates module-level objects once (about 1 MB), which is no layer's memory;
    # and at the batch the tests measure, so that every compiled kernel those steps
    # take has been compiled (Numba compiles at a kernel's first call, per dtype).
    warm = Sequential(_small_layers(), (32, 32, 3))
    _measure(warm, 64, optimizer="adam")
    return _measure
