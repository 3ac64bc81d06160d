"""A volnet network as a PyTorch model and back: the same architecture and the same weights.

``to_torch(net)`` builds a ``torch.nn.Sequential`` that computes what ``net``
computes, in PyTorch's layout: it takes a batch ``(N, C, H, W)`` where
volnet takes ``(N, H, W, D)`` (C is volnet's depth D), and returns class
scores ``(N, K)`` (a network that ends in a volume returns it as
``(N, C, H, W)``). ``from_torch(model, net)`` copies the weights of such a
model, trained or not, back into a volnet network of the same architecture.

Layer by layer:

=================  ==============================================================
volnet             PyTorch
=================  ==============================================================
Conv2D             ``Conv2d`` (stride, padding, dilation, bias or not); weights
                   ``(F, F, D1, K)`` become ``(K, D1, F, F)``. ``fit="pad"`` pads
                   bottom/right more than top/left: ``ZeroPad2d`` with volnet's
                   pads, then ``Conv2d(padding=0)``. ``fit="crop"``:
                   ``Conv2d(padding=P)``, since PyTorch floors the output size
                   and so never reads the rows volnet crops.
MaxPool            ``MaxPool2d(padding=P)``; ``fit="pad"`` adds ``ceil_mode=True``
                   (volnet's ``-inf`` padding never wins, and PyTorch's extra
                   window sees only the input; both drop a last window that
                   would start in the padding).
AvgPool            ``AvgPool2d(padding=P)``, whose ``count_include_pad`` counts the
                   padded zeros in the mean as volnet does; ``fit="pad"``:
                   ``ZeroPad2d`` first, since ``ceil_mode`` would divide the extra
                   window by the cells inside the input instead of ``F*F``.
L2Pool             ``LPPool2d(2, ...)``, after a ``ZeroPad2d`` when padded.
GlobalAvgPool      ``AdaptiveAvgPool2d(1)``.
ReLU, Dropout      ``ReLU``, ``Dropout(p)``.
BatchNorm          ``BatchNorm2d`` on volumes, ``BatchNorm1d`` on vectors: weight =
                   gamma, bias = beta, running mean and variance, eps, momentum
                   (volnet uses PyTorch's momentum convention).
Flatten            ``Flatten``.
FC                 ``Linear``, weight ``(fan_in, K)`` transposed to ``(K, fan_in)``;
                   an FC reading a volume gets a ``Flatten`` in front of it.
Residual           :class:`~volnet.interop.torch_modules.Residual`:
                   ``body(x) + shortcut(x)``, each path an ``nn.Sequential``.
Concat, Inception  :class:`~volnet.interop.torch_modules.Concat`: the branches'
                   outputs concatenated along channels.
LocallyConnected   :class:`~volnet.interop.torch_modules.LocallyConnected2d`
                   (PyTorch has none, pytorch#499): ``unfold`` and one batched
                   multiply, after a ``ZeroPad2d`` when padded; weights
                   ``(H2, W2, F, F, D1, K)`` become ``(H2*W2, D1*F*F, K)``.
=================  ==============================================================

Each layer kind converts itself: :meth:`volnet.layers.Layer.to_torch` gives
its modules (through the small :class:`Bridge` interface, so that the
layers never import torch) and :meth:`~volnet.layers.Layer.torch_arrays` how
its arrays map; this module only walks the network, keeps the flattening
order, and copies the arrays. A new layer kind converts by defining those
two methods.

Flattening order. volnet stretches a volume ``(H, W, D)`` depth-fastest
(the notes' ``X[x, y, :]`` columns one after another); PyTorch's ``Flatten``
stretches ``(C, H, W)`` width-fastest. The same FC weights would then meet
the activations in another order. Rather than a permute module at run time,
the bridge permutes the *rows* of the FC weight matrix once, at conversion:
PyTorch feature ``i`` is volnet feature ``order[i]``, so the Linear weight is
``w[order].T``. A BatchNorm (or ReLU, Dropout) between the Flatten and the FC
sees the permuted vector too, and its per-feature parameters are permuted the
same way. The model is therefore exactly the volnet network, with no runtime
cost; only a network (or a container's path) that *ends* on a flattened
volume cannot be expressed this way and raises NotImplementedError.

Train and eval: like any new PyTorch module, the model starts in training
mode; call ``model.eval()`` for inference (volnet's ``train=False``). Dropout
masks come from PyTorch's generator, so training-mode outputs of a network
with Dropout differ from volnet's; everything else agrees to rounding.

PyTorch is imported when a function here is called, not when volnet is:
volnet itself needs only NumPy.

Example:
    >>> from volnet.zoo import notes_layout
    >>> to_torch(notes_layout((32, 32, 3)))  # INPUT[32x32x3] -> CONV5-12 -> RELU -> POOL2 -> FC10
    Sequential(
      (0): Conv2d(3, 12, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))
      (1): ReLU()
      (2): MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=1, ceil_mode=False)
      (3): Flatten(start_dim=1, end_dim=-1)
      (4): Linear(in_features=3072, out_features=10, bias=True)
    )
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..layers import LAYER_TYPES, Layer
from ..net import Sequential

TORCH_INSTALL = "pip install torch==2.13.0 (the CPU wheel: add --index-url https://download.pytorch.org/whl/cpu)"


def _supported() -> str:
    """The layer classes that convert (those defining ``to_torch``), for error messages."""
    return ", ".join(name for name, cls in LAYER_TYPES.items() if cls.to_torch is not Layer.to_torch)


def _import_torch():
    """``(torch, volnet.interop.torch_modules)``, or an ImportError that says how to install torch."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"volnet.interop's PyTorch bridge needs PyTorch, which is not installed: "
                          f"{TORCH_INSTALL}") from error
    from . import torch_modules
    return torch, torch_modules


@dataclass
class _Step:
    """What one volnet layer becomes in PyTorch.

    ``holder`` indexes the module in ``modules`` that holds the layer's
    parameters and buffers (None for layers without any). ``order`` is the
    permutation of the flat features the layer reads (PyTorch feature ``i`` is
    volnet feature ``order[i]``), or None when both orders agree. A
    container's ``paths`` hold the steps of its paths, in the order of its
    module's ``paths``.
    """

    layer: Layer
    modules: list
    holder: int | None = None
    order: np.ndarray | None = None
    paths: list[list[_Step]] = field(default_factory=list)


class Bridge:
    """What :meth:`volnet.layers.Layer.to_torch` is handed: ``nn`` (``torch.nn``), ``tm``
    (:mod:`volnet.interop.torch_modules`), and ways to make a step, convert a path of layers and
    chain steps into an ``nn.Sequential``."""

    def __init__(self, tm):
        self.tm, self.nn = tm, tm.nn

    def step(self, layer: Layer, modules: list, holder: int | None = None, order=None, paths=()) -> _Step:
        return _Step(layer, modules, holder, order, list(paths))

    def path(self, layers: list[Layer]) -> list[_Step]:
        return _plan_path(layers, self.tm)

    def sequential(self, steps: list[_Step]):
        return _sequential(steps, self.nn)


def _convert(layer: Layer, order, tm) -> tuple[_Step, np.ndarray | None]:
    """The step for one layer reading its input in feature ``order``, and the order it leaves."""
    converted = layer.to_torch(Bridge(tm), order)
    if converted is None:
        raise NotImplementedError(f"{layer.label}: the PyTorch bridge has no equivalent for {type(layer).__name__}; "
                                  f"it converts {_supported()}")
    return converted


def _plan_path(layers: list[Layer], tm) -> list[_Step]:
    """The steps of layers run one after the other (a network, or a container's path)."""
    steps, order = [], None
    for layer in layers:
        step, order = _convert(layer, order, tm)
        steps.append(step)
    if order is not None:
        raise NotImplementedError(
            f"{layers[-1].label} leaves a flattened volume, whose values PyTorch's Flatten orders (C, H, W) "
            "and volnet's (H, W, D); the bridge reorders the weights of the next FC layer instead, so "
            "follow it with an FC layer"
        )
    return steps


def _sequential(steps: list[_Step], nn):
    return nn.Sequential(*[module for step in steps for module in step.modules])


def _plan(net: Sequential, tm) -> list[_Step]:
    if not isinstance(net, Sequential):
        raise TypeError(f"expected a volnet Sequential, got {type(net).__name__}")
    if not net.allocated:
        raise ValueError("this network was built with allocate=False and has no weights to bridge; "
                         "build it with allocate=True")
    return _plan_path(net.layers, tm)


def _mapping(step: _Step) -> list[tuple]:
    """``(volnet name, torch name, volnet -> torch, torch -> volnet)`` for every array of the layer."""
    order = step.order
    inverse = None if order is None else np.argsort(order)

    def gather(a):
        return a if order is None else a[order]

    def scatter(a):
        return a if order is None else a[inverse]

    return step.layer.torch_arrays(gather, scatter)


def _volnet_arrays(layer: Layer) -> dict[str, np.ndarray]:
    """The live parameter and buffer arrays of a layer that is not a container, by name."""
    return {**{p.name: p.value for p in layer.params()}, **layer.buffers()}


def _torch_tensors(module) -> dict:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def _holders(steps: list[_Step], modules: list):
    """``(step, module holding its arrays)`` for every layer with arrays, containers' children included."""
    offset = 0
    for step in steps:
        if step.paths:
            for path, sequential in zip(step.paths, modules[offset].paths):
                yield from _holders(path, list(sequential))
        elif step.holder is not None:
            yield step, modules[offset + step.holder]
        offset += len(step.modules)


def paired_arrays(net: Sequential, model) -> list[tuple]:
    """``(layer, name, array, tensor, forward, backward)`` for every parameter and buffer of ``net``: the
    volnet layer, the array's name there and the live array, the tensor that holds it in ``model`` (what
    :func:`to_torch` built from ``net``), and the maps volnet -> torch and torch -> volnet between their layouts."""
    torch, tm = _import_torch()
    with torch.device("meta"):  # the plan only, no weights allocated
        steps = _plan(net, tm)
    pairs = []
    for step, module in _holders(steps, list(model)):
        ours, theirs = _volnet_arrays(step.layer), _torch_tensors(module)
        for name, torch_name, forward, backward in _mapping(step):
            pairs.append((step.layer, name, ours[name], theirs[torch_name], forward, backward))
    return pairs


def modules_per_layer(net: Sequential) -> list[int]:
    """How many modules of :func:`to_torch`'s ``nn.Sequential`` each of ``net``'s layers becomes, in order."""
    _, tm = _import_torch()
    return [len(step.modules) for step in _plan(net, tm)]


def to_torch(net: Sequential):
    """The PyTorch model equivalent to ``net`` (NCHW input), with ``net``'s weights copied exactly.

    The model has ``net``'s dtype and starts in training mode (PyTorch's
    default); see the module docstring for the layer-by-layer mapping.

    Raises:
        ImportError: PyTorch is not installed.
        NotImplementedError: a layer without an exact PyTorch equivalent.
        ValueError: ``net`` was built with ``allocate=False``.
    """
    torch, tm = _import_torch()
    steps = _plan(net, tm)
    model = _sequential(steps, torch.nn).to(torch.from_numpy(np.zeros(0, net.dtype)).dtype)
    with torch.no_grad():
        for step, module in _holders(steps, list(model)):
            ours, theirs = _volnet_arrays(step.layer), _torch_tensors(module)
            for name, torch_name, forward, _ in _mapping(step):
                theirs[torch_name].copy_(torch.from_numpy(np.ascontiguousarray(forward(ours[name]))))
    return model


def from_torch(model, net: Sequential) -> Sequential:
    """Copy the weights (and BatchNorm running averages) of ``model`` into ``net``, in place; returns ``net``.

    ``model`` is what :func:`to_torch` builds for a network of ``net``'s
    architecture, possibly trained since; ``net``'s arrays keep their dtype
    and identity (an optimizer built on ``net.params()`` stays valid).

    Raises:
        ValueError: ``model``'s modules or shapes do not match ``net``'s architecture.
    """
    torch, tm = _import_torch()
    with torch.device("meta"):  # the expected modules, without allocating their weights
        steps = _plan(net, tm)
        blueprint = _sequential(steps, torch.nn)
    expected, found = ([type(m).__name__ for m in tree.modules()] for tree in (blueprint, model))
    if found != expected:
        raise ValueError(f"the PyTorch model does not match the volnet network: it has modules {found}, "
                         f"to_torch(net) would build {expected}")
    for (step, module), (_, wanted) in zip(_holders(steps, list(model)), _holders(steps, list(blueprint))):
        ours, theirs, shapes = _volnet_arrays(step.layer), _torch_tensors(module), _torch_tensors(wanted)
        for name, torch_name, _, backward in _mapping(step):
            tensor = theirs[torch_name]
            if tensor.shape != shapes[torch_name].shape:
                raise ValueError(f"{step.layer.label}: the PyTorch model's {type(module).__name__}.{torch_name} "
                                 f"has shape {tuple(tensor.shape)}, this network needs "
                                 f"{tuple(shapes[torch_name].shape)}: the architectures differ")
            ours[name][...] = backward(tensor.detach().cpu().numpy())
    return net
