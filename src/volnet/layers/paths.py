"""Running a path of layers forward and backward, with the fusions that save a pass over memory: CONV/FC ->
RELU, CONV -> BatchNorm (-> RELU) in inference, and RELU -> POOL in backward."""

from __future__ import annotations

import numpy as np

from .base import Layer, keeps


def fused_pair(layer: Layer, following) -> bool:
    """Whether :func:`forward_layers` fuses ``following`` (a ReLU) into ``layer`` (a CONV or FC); the
    memory analysis asks the same (the fused ReLU allocates nothing, see ``ReLU.forward_workspace``)."""
    return layer.fuses_relu and bool(getattr(following, "adopt_rectified", None))


def fused_affine(layer: Layer, following, train: bool, keep: bool | None) -> bool:
    """Whether :func:`forward_layers` applies ``following`` (a BatchNorm, whose inference is a per-slice
    affine map) inside ``layer``'s output pass (a CONV's): in inference without caches only."""
    return getattr(layer, "fuses_affine", False) and hasattr(following, "inference_affine") and not keeps(train, keep)


def fused_rectifier(layer) -> bool:
    """Whether ``layer`` (a ReLU) runs inside the CONV two before it, after a fused BatchNorm
    (:func:`fused_affine`): in :func:`forward_layers`, and for the memory analysis."""
    return bool(getattr(layer, "adopt_rectified", None))


def fused_pool(layer: Layer, norm, following) -> bool:
    """Whether an inference plan may max pool inside ``layer``'s output pass (a CONV's, without a fused
    BatchNorm) the POOL ``following``: a max pool of square windows as wide as their stride, unpadded
    (``fused_pool_size``). The plan still checks that the window tiles the CONV's output
    (``volnet.layers.inference``)."""
    return (getattr(layer, "fuses_pool", False) and norm is None
            and getattr(following, "fused_pool_size", None) is not None)


def fused_backward_pair(layer: Layer, following) -> bool:
    """Whether :func:`backward_layers` runs ``layer``'s backward (a ReLU's) inside ``following``'s (a POOL's,
    which masks its dx where the ReLU's output is not positive as it writes it: one pass over memory fewer);
    the memory analysis asks the same."""
    return bool(getattr(layer, "take_rectified", None)) and getattr(following, "passes_back_rectified", False)


def forward_layers(layers: list[Layer], x: np.ndarray, train: bool, workers=None,
                   keep: bool | None = None) -> np.ndarray:
    """Run a path of layers, first to last, fusing every CONV -> RELU and FC -> RELU pair, and in inference
    without caches every CONV -> BatchNorm (-> RELU): the CONV applies the BatchNorm's map
    (``BatchNorm.inference_affine``) and the ReLU to its output, the BatchNorm allocates nothing.

    A fused pair computes exactly what the two layers compute one after the
    other, but the ReLU touches each block of the CONV's output while it is
    still in cache instead of reading and writing the whole volume again:
    one pass over memory fewer per pair, and in inference one volume fewer
    held (the measured gain, small: docs/performance-log.md). The ReLU layer
    still keeps its output for its backward pass, so backward runs layer by
    layer as usual.

    ``workers`` (the network pass's :class:`volnet.ops.threads.Workers`) and
    ``keep`` go to every layer (see :meth:`Layer.forward`).
    """
    for layer, norm, relu, _ in fused_groups(layers, train, keep):
        x = forward_group(layer, norm, relu, x, train, workers, keep)
    return x


def fused_groups(layers: list[Layer], train: bool, keep: bool | None, pools: bool = False):
    """The path's layers as :func:`forward_layers` runs them: ``(layer, norm, relu, pool)`` for each, ``norm`` the
    BatchNorm fused into it (:func:`fused_affine`) and ``relu`` the ReLU (:func:`fused_pair`,
    :func:`fused_rectifier`), None where there is none; with ``pools`` (an inference plan) ``pool`` the max
    pool that may follow them in the same pass (:func:`fused_pool`), else None. The layers fused into one
    are not listed again."""
    index = 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if fused_affine(layer, following, train, keep):
            after = layers[index + 2] if index + 2 < len(layers) else None
            norm, relu = following, after if fused_rectifier(after) else None
            index += 3 if relu else 2
        elif fused_pair(layer, following):
            norm, relu = None, following
            index += 2
        else:
            norm = relu = None
            index += 1
        candidate = layers[index] if index < len(layers) else None
        pool = candidate if pools and fused_pool(layer, norm, candidate) else None
        index += pool is not None
        yield layer, norm, relu, pool


def forward_group(layer: Layer, norm, relu, x: np.ndarray, train: bool, workers=None, keep: bool | None = None):
    """``layer``'s forward with the BatchNorm ``norm`` and the ReLU ``relu`` fused into it (either None: not
    fused), as :func:`fused_groups` lists them; the fused layers keep what they would have kept."""
    if norm is None and relu is None:
        return layer.forward(x, train, keep=keep, workers=workers)
    if norm is None:
        x = layer.forward(x, train, keep=keep, workers=workers, relu=True)
    else:
        x = layer.forward(x, train, keep=keep, workers=workers, relu=relu is not None, affine=norm.inference_affine())
        norm._keep(None, train, keep)
    if relu is not None:
        relu.adopt_rectified(x, train, keep)
    return x


def backward_layers(layers: list[Layer], dout: np.ndarray, input_grad: bool, workers=None):
    """Last layer first; only the first layer may skip its input gradient (when ``input_grad`` is false).

    A ReLU -> POOL pair runs as one (:func:`fused_backward_pair`): the same numbers. ``workers`` as in
    :func:`forward_layers`.
    """
    j = len(layers) - 1
    while j >= 0:
        if j > 0 and fused_backward_pair(layers[j - 1], layers[j]):
            dout = layers[j].backward(dout, workers=workers, rectified=layers[j - 1].take_rectified())
            if j == 1 and not input_grad:
                dout = None  # the pair began the path, and its input gradient was not asked for
            j -= 2
        else:
            dout = layers[j].backward(dout, input_grad=input_grad or j > 0, workers=workers)
            j -= 1
    return dout
