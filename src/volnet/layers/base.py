"""What every layer shares: parameters with their gradients, building, config.

A layer is created with its hyperparameters only (``Conv2D(K=12, F=3, P=1)``);
the network then *builds* it for the volume that flows in, which is when
its weights are allocated and its hyperparameters checked against the input
(a stride that does not fit fails here, before any data flows).

``forward(x, train)`` keeps what backward needs only when ``train`` is true;
in inference nothing is kept, so memory holds just the current activations.

Building with ``allocate=False`` checks every shape and records every
parameter's shape without allocating the weights (VGG-16's 138M of them
would take 553 MB in float32): each weight is a read-only, zero-memory
placeholder of the right shape (:func:`placeholder`), so parameter counts,
shapes and summaries work, and computing with them fails loudly.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

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


class Layer:
    """Base class: subclasses set ``self._params`` in :meth:`build` and implement
    :meth:`output_shape`, :meth:`forward` and :meth:`backward`."""

    # A layer whose forward takes ``relu=True`` (rectifying its output block by
    # block while it is in cache) sets this; a ReLU right after it is then
    # fused into it by :func:`forward_layers`. A subclass of Conv2D or FC that
    # overrides forward without that argument must set it back to False.
    fuses_relu = False

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
    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Fill the parameters' gradients and return the gradient w.r.t. the input.

        Layers with parameters may skip the input gradient (and return None)
        when ``input_grad`` is false; the network asks that of its first layer.
        """
        raise NotImplementedError

    def _keep(self, cache, train: bool):
        """Store the backward cache in training; drop any old one in inference."""
        self._cache = cache if train else None

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
    return np.broadcast_to(np.zeros((), dtype=dtype), tuple(shape))


def he_normal(rng: np.random.Generator, shape, fan_in: int, dtype) -> np.ndarray:
    """He initialisation for ReLU nets: N(0, 2/fan_in); a :func:`placeholder` when building shapes only."""
    if isinstance(rng, ShapesOnly):
        return placeholder(shape, dtype)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def forward_layers(layers: list[Layer], x: np.ndarray, train: bool) -> np.ndarray:
    """Run a path of layers, first to last, fusing every CONV -> RELU and FC -> RELU pair.

    A fused pair computes exactly what the two layers compute one after the
    other, but the ReLU touches each block of the CONV's output while it is
    still in cache instead of reading and writing the whole volume again. A
    separate ReLU took 1.6 ms on a 64 x 32x32x32 batch, next to the CONV's
    17 ms; whole-network forward passes gained 1-3%, within the development
    machine's noise. The ReLU layer still keeps its output for its backward
    pass, so backward runs layer by layer as usual.
    """
    index = 0
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if layer.fuses_relu and getattr(following, "adopt_rectified", None):
            x = layer.forward(x, train=train, relu=True)
            following.adopt_rectified(x, train)
            index += 2
        else:
            x = layer.forward(x, train=train)
            index += 1
    return x
