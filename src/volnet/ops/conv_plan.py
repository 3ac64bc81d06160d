"""Which algorithms run a CONV: the one place that chooses, read by the kernels of :mod:`volnet.ops.conv`,
their memory estimates and the benchmarks' labels alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import conv_rows, direct, direct_input, direct_weights, streamed, winograd, winograd_5x5, winograd_fused
from .memo import remembered
from .window import Geometry


@dataclass(frozen=True)
class ConvPlan:
    """How one CONV runs, for its kernels and their memory estimates alike (:func:`plan_conv`).

    ``forward``: ``"winograd"`` (:func:`volnet.ops.winograd.correlate`, F(4x4, 3x3) or F(2x2, 3x3)), ``"direct"``
    (:func:`volnet.ops.direct.correlate`), ``"winograd_fused"`` (F(4x4, 5x5) compiled, LeNet-sized layers:
    :mod:`volnet.ops.winograd_fused`), ``"winograd_5x5"`` (F(4x4, 5x5) through BLAS), ``"streamed"`` or ``"im2col"``;
    ``weight_gradient``: ``"winograd"``, ``"direct"`` (:func:`volnet.ops.direct_weights.weight_gradient`),
    ``"winograd_5x5"`` or ``"im2col"``; ``input_gradient``:
    ``"direct"`` (:func:`volnet.ops.direct_input.input_gradient`), ``"shallow"``
    (:func:`~volnet.ops.conv_rows.input_gradient_shallow`), ``"flipped"``
    (:func:`volnet.ops.conv.conv_backward_input_flipped`, a correlation with its own plan), ``"phases"``
    (:func:`volnet.ops.direct_input.input_gradient_by_phases`, strided layers), ``"pointwise"``
    (:func:`~volnet.ops.conv_rows.input_gradient_pointwise`, strided 1x1 layers) or ``"col2im"``
    (:func:`~volnet.ops.conv_rows.input_gradient_deep`).
    """

    forward: str
    weight_gradient: str
    input_gradient: str


def plan_conv(g: Geometry, filters: int, dtype, cores: int | None = None, network_pass: bool = False,
              split_rows: bool = False) -> ConvPlan:
    """The algorithms of a CONV of geometry ``g`` into ``filters`` filters on values of ``dtype``.

    ``cores``, ``network_pass`` and ``split_rows`` are the kernel's workers (``Workers.cores``,
    ``Workers.blas_held``, ``Workers.split_rows``): thin Winograd weight gradients pay only when split over
    the cores, and one image split over Numba's threads takes the direct forward more often. Each rule and
    its measurement lives beside its kernel (:func:`volnet.ops.direct.before_winograd`,
    :func:`volnet.ops.winograd.applies`, :func:`volnet.ops.winograd_fused.applies`, :func:`volnet.ops.streamed.applies`,
    :func:`volnet.ops.direct.applies`, :func:`volnet.ops.winograd_5x5.applies`,
    :func:`volnet.ops.direct_input.applies`); the order here is which wins where several apply.
    A layer asks for the same plan on every call, so plans are remembered (:func:`_plan`: working one out
    cost about 10 us, a tenth of a batch-1 CONV's forward); a test that changes a rule forgets them
    (:func:`volnet.ops.memo.forget`, tests/conftest.py).
    """
    return _plan(g, filters, np.dtype(dtype), cores, network_pass, split_rows)


@remembered
def _plan(g: Geometry, filters: int, dtype: np.dtype, cores: int | None, network_pass: bool,
          split_rows: bool) -> ConvPlan:
    (N, _, _, D), K, dtype = g.in_shape, filters, np.dtype(dtype)
    if direct.before_winograd(g, D, K, dtype):
        forward = "direct"
    elif winograd.applies(g, D, dtype):
        forward = "winograd"
    elif winograd_fused.applies(g, D, K, dtype):
        forward = "winograd_fused"
    elif streamed.applies(g, D, K, dtype, split_rows):
        forward = "streamed"
    elif direct.applies(g, D, K, dtype, split_rows):
        forward = "direct"
    elif winograd_5x5.applies(g, D, K, dtype):
        forward = "winograd_5x5"
    else:
        forward = "im2col"
    if winograd.applies_to_weight_gradient(g, D, K, dtype, winograd.workers(N, g.out_hw, D, K, network_pass, cores)):
        weight_gradient = "winograd"
    elif direct_weights.applies_to_weight_gradient(g, D, K, dtype):
        weight_gradient = "direct"
    elif winograd_5x5.applies(g, D, K, dtype):
        weight_gradient = "winograd_5x5"
    else:
        weight_gradient = "im2col"
    if direct_input.applies(g, D, K, dtype):
        input_gradient = "direct"
    elif D < conv_rows.SHALLOW_DEPTH:
        input_gradient = "shallow"
    elif g.stride == (1, 1):
        input_gradient = "flipped"
    elif direct_input.applies_by_phases(g, D, K, dtype):
        input_gradient = "phases"
    elif g.size == (1, 1) and g.dilation == (1, 1):
        input_gradient = "pointwise"
    else:
        input_gradient = "col2im"
    return ConvPlan(forward, weight_gradient, input_gradient)


def pools_in_kernel(forward: str, g: Geometry, pool: int) -> bool:
    """Whether a CONV whose plan's forward is ``forward`` max pools its output ``pool x pool`` (a following POOL
    fused in inference) in its own kernel's output pass: the direct kernel, and the compiled Winograd where the
    pool divides its 4x4 tiles (:func:`volnet.ops.winograd_fused.can_pool`); other plans pool after the CONV."""
    return pool > 1 and (forward == "direct" or forward == "winograd_fused" and winograd_fused.can_pool(g, pool))
