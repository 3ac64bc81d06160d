"""What every layer shares: parameters with their gradients, building, config.

A layer is created with its hyperparameters only (``Conv2D(K=12, F=3, P=1)``);
the network then *builds* it for the volume that flows in, which is when
its weights are allocated and its hyperparameters checked against the input
(a stride that does not fit fails here, before any data flows).

``forward(x, train, keep=None, workers=None)`` keeps what backward needs
only when ``train`` is true; in inference nothing is kept, so memory holds
just the current activations. ``keep=True`` with ``train=False`` computes
inference values (BatchNorm's running statistics, no dropout) and keeps
what a backward pass through them needs: the gradients that saliency and
Grad-CAM explain. ``workers`` are the threads of the network pass (a
:class:`volnet.ops.threads.Workers`, handed on to the kernels; None: each
kernel's default). Every layer takes all four.

Building with ``allocate=False`` checks every shape and records every parameter's shape without
allocating the weights (VGG-16's 138M of them would take 553 MB in float32): each weight is a read-only,
zero-memory placeholder of the right shape (:func:`placeholder`), so parameter counts, shapes and
summaries work, and computing with them fails loudly.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from ..ops import aligned
from ..ops.workspace import BackwardWorkspace, ForwardWorkspace, Workload
from ..shapes import ShapeError, format_volume

LAYER_TYPES: dict[str, type[Layer]] = {}


@dataclass(eq=False)
class Param:
    """A parameter array and the gradient of the loss with respect to it.

    ``grad`` is replaced (not accumulated) by every backward pass.
    """

    name: str
    value: np.ndarray
    grad: np.ndarray | None = None


class ParamArray:
    """A layer attribute that reads one of its parameters by name: ``layer.weight`` is the live array of the
    parameter called ``"weight"`` (None before the layer is built, or when the layer has no such parameter,
    as a CONV without biases has no ``bias``). The public names tools use, as Keras's ``kernel`` and
    PyTorch's ``weight``; the gradient is ``named_params()``'s."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        for param in layer._params:  # (a loop: a generator took 0.6 us of a batch-1 CONV's 30)
            if param.name == self.name:
                return param.value
        return None


@dataclass(frozen=True)
class Costs:
    """One layer's counts for one input volume (see :mod:`volnet.analysis.walk` for the conventions).

    ``params`` its parameters (``param_sizes`` array by array), ``macs`` its
    multiply-adds, ``other_ops`` every other operation (bias adds, RELU's
    max, pooling's comparisons...).
    """

    params: int = 0
    macs: int = 0
    other_ops: int = 0
    param_sizes: tuple = ()


@dataclass(frozen=True)
class Keyword:
    """How a layer kind is written in the notes' notation (``volnet.spec`` builds its table from these).

    Attributes:
        name: the keyword, as :func:`volnet.spec.to_notation` writes it (``"CONV"``).
        args: argument names, positional ones first.
        positional: how many of ``args`` may be given without ``name=``.
        compact: the argument set by digits glued to the keyword (CONV3: F, FC4096: K).
        dash: the argument after ``-`` (CONV3-64: K).
        modifiers: letters allowed as ``/S2``, ``/P1``, ``/D2``, ``/B0``.
        branches: ``(fewest, most)`` chains inside ``{ }`` for containers (most None: no limit).
        aliases: other spellings of the keyword.
        pool: a pooling layer, which doubles the K of later bare CONVs.
    """

    name: str
    args: tuple[str, ...] = ()
    positional: int = 0
    compact: str | None = None
    dash: str | None = None
    modifiers: str = ""
    branches: tuple[int, int | None] | None = None
    aliases: tuple[str, ...] = ()
    pool: bool = False


class Layer:
    """Base class: subclasses set ``self._params`` in :meth:`build` and implement
    :meth:`output_shape`, :meth:`forward` and :meth:`backward`.

    Each layer kind also describes itself, once, for everything that works on
    shapes or translates networks (``volnet.analysis``, ``volnet.spec``,
    ``volnet.interop``): its ``kind`` and ``keyword`` (notation), its
    :meth:`costs` and receptive :meth:`window`, the memory its kernels
    allocate (:meth:`forward_workspace`, :meth:`backward_workspace`, which
    delegate to the workspace function beside each kernel in ``volnet.ops``),
    and its PyTorch equivalent (:meth:`to_torch`, :meth:`torch_arrays`). The
    defaults describe an unknown layer: built parameters counted, no
    multiply-adds, memory of a plain elementwise layer, no notation, no
    PyTorch equivalent.
    """

    # The name analysis reports for this kind ("conv", "pool"...); "other" for one it knows nothing about.
    kind = "other"
    # How the notation writes it (None: it has no keyword). Declared per class, not inherited.
    keyword: Keyword | None = None
    # Whether the notes' activation count includes its output (elementwise layers are taken as in place).
    counted_in_notes = False
    # Whether each output neuron sees the whole input volume (FC, global pooling).
    sees_whole_input = False

    # A layer whose forward takes ``relu=True`` (rectifying its output block by
    # block while it is in cache) sets this; a ReLU right after it is then
    # fused into it by :func:`forward_layers`. A subclass of Conv2D or FC that
    # overrides forward without that argument must set it back to False.
    fuses_relu = False
    # False freezes the layer (Keras' ``layer.trainable = False``): an optimizer built on
    # ``Sequential.trainable_params()`` leaves its parameters out, and frozen first layers run in
    # inference mode while training (see ``Sequential.frozen_prefix``).
    trainable = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        LAYER_TYPES[cls.__name__] = cls

    def __init__(self):
        self.label = type(self).__name__  # the network renames it "layer 3 (Conv2D)"
        self.input_shape: tuple | None = None
        self._params: list[Param] = []
        self._cache = None

    # -- building --------------------------------------------------------
    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of one output volume for one input volume; raises ShapeError if they don't fit."""
        raise NotImplementedError

    def build(self, input_shape: tuple, rng: np.random.Generator, dtype=np.float32, allocate: bool = True) -> tuple:
        """Check the hyperparameters against ``input_shape``, allocate parameters, return the output shape.

        ``allocate=False`` gives the weights as placeholders (see the module docstring).
        """
        out = self.output_shape(tuple(input_shape))
        self.input_shape = tuple(input_shape)
        self._params = self._init_params(self.input_shape, rng if allocate else ShapesOnly(rng), np.dtype(dtype))
        return out

    def _init_params(self, input_shape, rng, dtype) -> list[Param]:
        return []

    # -- computing -------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False, *, keep: bool | None = None,
                workers=None) -> np.ndarray:
        """The output volume; ``keep`` (default: ``train``) keeps what :meth:`backward` needs."""
        raise NotImplementedError

    def backward(self, dout: np.ndarray, input_grad: bool = True, *, workers=None) -> np.ndarray | None:
        """Fill the parameters' gradients and return the gradient w.r.t. the input.

        Layers with parameters may skip the input gradient (and return None)
        when ``input_grad`` is false; the network asks that of its first layer.
        """
        raise NotImplementedError

    def _keep(self, cache, train: bool, keep: bool | None = None):
        """Store the backward cache when :func:`keeps` says so; drop any old one otherwise."""
        self._cache = cache if keeps(train, keep) else None

    def _take_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{self.label}: backward() needs a preceding forward(x, train=True)")
        cache, self._cache = self._cache, None
        return cache

    # -- parameters and config ------------------------------------------
    def sublayers(self) -> list[tuple[str, Layer]]:
        """Named child layers of a container (``("body.1", layer)``...); empty for plain layers."""
        return []

    def named_layers(self, prefix: str = ""):
        """This layer and every nested one, with dotted paths (``""`` for this layer)."""
        yield prefix, self
        for name, child in self.sublayers():
            yield from child.named_layers(f"{prefix}.{name}" if prefix else name)

    def named_params(self) -> list[tuple[str, Param]]:
        """Parameters with unique dotted names (``weight``, ``body.1.weight``...)."""
        named = [(p.name, p) for p in self._params]
        for name, child in self.sublayers():
            named += [(f"{name}.{sub}", p) for sub, p in child.named_params()]
        return named

    def params(self) -> list[Param]:
        """Parameters with their gradients (empty for RELU, POOL, Flatten)."""
        return [p for _, p in self.named_params()]

    def buffers(self) -> dict[str, np.ndarray]:
        """State that is saved with the weights but not trained (BatchNorm's running averages).

        Returned arrays are the live ones: checkpoint loading writes into them in place.
        """
        return {}

    def named_buffers(self) -> dict[str, np.ndarray]:
        """:meth:`buffers` of this layer and every nested one, with dotted names."""
        named = dict(self.buffers())
        for name, child in self.sublayers():
            named.update({f"{name}.{sub}": value for sub, value in child.named_buffers().items()})
        return named

    @property
    def num_params(self) -> int:
        return sum(p.value.size for p in self.params())

    def get_config(self) -> dict:
        """Every constructor argument, so that ``type(layer)(**config)`` rebuilds it."""
        return {}

    # -- the description of the kind (shapes only, nothing allocated) ----------------
    def costs(self, input_shape: tuple, output_shape: tuple) -> Costs:
        """Parameters, multiply-adds and other ops for one input volume. Default: the built parameters."""
        sizes = tuple(p.value.size for p in self.params())
        return Costs(sum(sizes), 0, 0, sizes)

    def window(self, input_shape: tuple):
        """``(F, S, P, dilation)`` as ``(h, w)`` pairs for a layer that slides a window; None otherwise."""
        return None

    def buffer_values(self, input_shape: tuple) -> int:
        """Values of non-trained state it holds (BatchNorm's running averages)."""
        return 0

    def named_paths(self) -> list[tuple[str, list[Layer]]]:
        """A container's paths, named (``("body", [...])``); empty for a plain layer."""
        return []

    def forward_workspace(self, work: Workload) -> ForwardWorkspace:
        """What its forward pass allocates on a batch (see :mod:`volnet.ops.workspace`). Default: an
        elementwise layer that keeps its input."""
        return ForwardWorkspace((), work.n_out * work.itemsize, keeps_input=True)

    def backward_workspace(self, work: Workload, input_grad: bool = True,
                           dout_contiguous: bool = True) -> BackwardWorkspace:
        """What its backward pass allocates on top of dout and its cache. Default: gradients and dx."""
        return BackwardWorkspace(work.grads + work.n_in * work.itemsize, work.n_in * work.itemsize)

    def to_torch(self, bridge, order):
        """``(step, order after it)`` for ``volnet.interop.torch_bridge``, or None: no PyTorch equivalent.

        ``bridge`` gives ``nn`` (``torch.nn``), ``tm`` (``volnet.interop.torch_modules``), ``step(...)``,
        ``path(layers)`` and ``sequential(steps)``; ``order`` is the feature order of a flattened input.
        """
        return None

    def torch_arrays(self, gather, scatter) -> list[tuple]:
        """``(volnet name, torch name, volnet -> torch, torch -> volnet)`` for each of its arrays.

        ``gather`` and ``scatter`` reorder the features of a flattened input (see the bridge).
        """
        return []

    def to_onnx(self, graph, x: str, input_shape: tuple) -> str | None:
        """Add its ONNX nodes to ``graph`` and return its output tensor's name; None: no ONNX equivalent.

        ``graph`` is a :class:`volnet.export.graph.Scope` (``op``, ``weight``, ``ints``, ``pads``,
        ``zero_pad``, ``path``), which names every node after the layer (``layer3_conv``); ``x`` is the
        input tensor, ``(N, D, H, W)`` for a volume or ``(N, n)`` for a vector, and ``input_shape``
        volnet's ``(H, W, D)`` or ``(n,)``.
        """
        return None

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        """Rebuild a layer from :meth:`get_config`; containers override it to rebuild their children."""
        return cls(**config)

    def __repr__(self) -> str:
        """Constructor call showing only the arguments that differ from their defaults."""
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if defaults.get(k, object()) != v)
        return f"{type(self).__name__}({args})"


def layer_config(layer: Layer) -> dict:
    """``{"type": name, **layer.get_config()}``, what :func:`layer_from_config` reads."""
    return {"type": type(layer).__name__, **layer.get_config()}


def layer_from_config(config: dict) -> Layer:
    """Rebuild a layer from ``{"type": name, **get_config()}`` (containers with their children)."""
    kind = config.get("type")
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}; known: {', '.join(sorted(LAYER_TYPES))}")
    return LAYER_TYPES[kind].from_config({k: v for k, v in config.items() if k != "type"})


def require_volume(layer: Layer, input_shape: tuple) -> tuple[int, int, int]:
    """Spatial layers need an (H, W, D) volume, not a flat vector."""
    if len(input_shape) != 3:
        raise ShapeError(
            f"{layer.label}: needs a volume (height, width, depth) but receives "
            f"{format_volume(input_shape)} (a flat vector, after an FC or Flatten layer); "
            "put spatial layers before the FC layers"
        )
    return input_shape


def inside_padding(g) -> bool:
    """True when no window of geometry ``g`` reaches past the symmetric padding P, so PyTorch's floored
    output size is volnet's: every layer but those whose ``fit="pad"`` adds rows at the bottom/right
    (``fit="crop"`` uses fewer rows than P allows). For the PyTorch bridge."""
    top, bottom, left, right = g.pads
    return bottom <= top and right <= left


def torch_zero_pad(g, nn):
    """``nn.ZeroPad2d`` with the pads of geometry ``g`` (for the PyTorch bridge)."""
    top, bottom, left, right = g.pads
    return nn.ZeroPad2d((left, right, top, bottom))


class ShapesOnly:
    """Stands in for the generator when a layer is built with ``allocate=False``.

    :func:`he_normal` returns a :func:`placeholder` when given one; any other
    use (Dropout's ``spawn``) goes to the real generator.
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __getattr__(self, name):
        return getattr(self.rng, name)


def placeholder(shape, dtype) -> np.ndarray:
    """A read-only array of zeros of ``shape`` that takes no memory (every entry is the same one)."""
    return np.broadcast_to(np.zeros((), dtype=dtype), np.atleast_1d(shape).tolist())


def zeros(rng, shape, dtype) -> np.ndarray:
    """Biases' initial zeros; a :func:`placeholder` when building shapes only (``rng`` a :class:`ShapesOnly`)."""
    return placeholder(shape, dtype) if isinstance(rng, ShapesOnly) else np.zeros(shape, dtype=dtype)


def he_normal(rng: np.random.Generator, shape, fan_in: int, dtype) -> np.ndarray:
    """He initialisation, N(0, 2/fan_in), placed for the direct CONVs (``aligned.copy``); a placeholder for shapes."""
    if isinstance(rng, ShapesOnly):
        return placeholder(shape, dtype)
    return aligned.copy((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype))


def keeps(train: bool, keep: bool | None) -> bool:
    """Whether a forward pass keeps its backward cache: ``keep`` when given, else in training."""
    return train if keep is None else keep


def frozen_layers(layers: list[Layer]) -> list[int]:
    """The frozen layers (``trainable`` False, 1-based) that hold parameters or buffers."""
    return [index for index, layer in enumerate(layers, start=1)
            if not layer.trainable and (layer.params() or layer.named_buffers())]


def frozen_prefix(layers: list[Layer]) -> int:
    """How many first layers nothing trains in (see ``Sequential.frozen_prefix``): those before the first
    layer with trainable parameters, when one of them is frozen; 0 otherwise."""
    frozen = frozen_layers(layers)
    for index, layer in enumerate(layers, start=1):
        if layer.trainable and layer.params():
            return index - 1 if frozen and frozen[0] < index else 0
    return len(layers) if frozen else 0
