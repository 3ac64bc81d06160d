"""Sequential: a stack of layers, each transforming one volume into the next."""

from __future__ import annotations

import numpy as np

from ..display import html_table
from ..layers.base import Layer, Param, frozen_layers, frozen_prefix, layer_config, layer_from_config
from ..layers.inference import inference_steps, run_steps
from ..layers.paths import backward_layers, forward_layers
from ..ops import threads
from ..resources import ResourceError, require_memory
from ..shapes import ShapeError, as_volume_shape, format_volume


SUMMARY_WIDTH = 60  # characters of a layer's description in summary()
SUMMARY_HEADER = ("#", "layer", "output volume", "params")


class Sequential:
    """A ConvNet as a list of layers, built and checked for one input volume.

    Args:
        layers: the layers, first to last.
        input_shape: one input volume ``(H, W, D)``, e.g. ``(32, 32, 3)`` for CIFAR-10.
        seed: seeds the weight initialisation. Default: 0.
        dtype: parameter dtype. Default: float32 (float64 for gradient checks).
        allocate: allocate and initialise the weights. Default: True. With
            False the network records every volume and parameter shape but
            the weights are zero-memory placeholders: ``shapes``,
            ``num_params`` and ``summary()`` work (VGG-16 in milliseconds,
            not 553 MB), ``forward`` raises.

    Building walks the volume through every layer, so a hyperparameter that
    does not fit (say a stride that leaves the last filter hanging) raises
    :class:`~volnet.ShapeError` here, naming the layer, before any data flows.

    Example:
        >>> from volnet.layers import Conv2D, ReLU, MaxPool, FC
        >>> net = Sequential([Conv2D(12, 3, P=1), ReLU(), MaxPool(2, 2), FC(10)], input_shape=(32, 32, 3))
        >>> net.output_shape
        (10,)
    """

    def __init__(self, layers: list[Layer], input_shape, *, seed: int = 0, dtype=np.float32, allocate: bool = True):
        self.layers = list(layers)
        self.input_shape = as_volume_shape(input_shape)
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.allocated = bool(allocate)
        self._multiply_adds = (None, 0)  # (the layers' ids, their multiply-adds an image): see forward
        self._inference = (None, [])  # (batch shape, workers, the layers' ids; their steps): see forward
        for index, layer in enumerate(self.layers, start=1):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {index}: expected a volnet layer, got {layer!r}")
            layer.label = f"layer {index} ({type(layer).__name__})"
        if self.allocated:
            self._require_parameter_memory()
        rng = np.random.default_rng(seed)
        shape = self.input_shape
        self.shapes: list[tuple] = []  # output shape of every layer
        for layer in self.layers:
            try:
                shape = layer.build(shape, rng, self.dtype, allocate=self.allocated)
            except (MemoryError, OverflowError) as error:  # past the estimate of _require_parameter_memory
                raise ResourceError(f"{layer.label}: its parameters do not fit in memory ({error}); "
                                    "choose a smaller layer or network (--arch)") from None
            self.shapes.append(shape)

    def _require_parameter_memory(self) -> None:
        """Refuse, before any weight exists, a network whose parameters do not fit in memory.

        Building needs every parameter (``itemsize`` bytes each) plus, for the
        largest array, its float64 draw from the generator (8 bytes per value,
        see ``layers.base.he_normal``). The sizes come from building every
        layer shapes-only first (zero-memory placeholders, a generator of its
        own); a shape that does not fit is left for the real build to report.
        """
        shape, shapes_only = self.input_shape, np.random.default_rng()
        sizes = []  # per layer, the size of each of its parameter arrays
        try:
            for layer in self.layers:
                shape = layer.build(shape, shapes_only, self.dtype, allocate=False)
                sizes.append([p.value.size for p in layer.params()])
        except (ShapeError, ValueError, TypeError, MemoryError, OverflowError):
            return
        held = [sum(arrays) for arrays in sizes]
        total, largest = sum(held), max(range(len(held)), key=held.__getitem__, default=None)
        if largest is None or not held[largest]:
            return
        draw = 8 * max(size for arrays in sizes for size in arrays)
        label = self.layers[largest].label
        require_memory(total * self.dtype.itemsize + draw,
                       f"building this network's {total:,} parameters ({label} holds {held[largest]:,})",
                       f"make {label} smaller or choose a smaller network (--arch)")

    @property
    def output_shape(self) -> tuple:
        return self.shapes[-1] if self.shapes else self.input_shape

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3 and x.shape == self.input_shape:
            raise ShapeError(f"input is one volume {format_volume(x.shape)}; pass a batch (N, H, W, D): x[None]")
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ShapeError(
                f"input batch has shape {x.shape}; this network expects (N, {', '.join(map(str, self.input_shape))}) "
                f"(N volumes of {format_volume(self.input_shape)}, depth last)"
            )
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        return x

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        """Class scores (or the last volume) for a batch ``(N, H, W, D)``.

        With ``train=True`` every layer keeps what its backward pass needs;
        with ``train=False`` nothing is kept, and the layers run as a plan worked
        out once per batch shape (:mod:`volnet.layers.inference`): the same
        numbers, with less bookkeeping a call.
        """
        if not self.allocated:
            raise RuntimeError("this network was built with allocate=False (shapes and parameter counts only); "
                               "build it again with allocate=True to compute with it")
        x = self._check_input(x)
        frozen = self.frozen_prefix if train else 0
        split_image = len(x) == 1 and self._multiply_adds_per_image() >= threads.SPLIT_IMAGE_MULTIPLY_ADDS
        with threads.scheduler().network_pass(len(x), split_image) as workers:
            if not train:
                return run_steps(self._inference_steps(x.shape, workers), self.layers, x)
            if frozen:  # the frozen first layers as in inference: no caches, BatchNorm's averages unchanged
                x = forward_layers(self.layers[:frozen], x, False, workers)
            return forward_layers(self.layers[frozen:], x, train, workers)

    def __getstate__(self) -> dict:
        """Pickled (or deep-copied) without its remembered inference steps, functions of this process that a copy
        works out again at its first pass."""
        return {**self.__dict__, "_inference": (None, [])}

    def _inference_steps(self, batch_shape, workers) -> list:
        """The layers' steps in inference on batches of ``batch_shape`` under ``workers``
        (:func:`volnet.layers.inference.inference_steps`), remembered for the last batch shape and workers."""
        key = (batch_shape, workers, tuple(map(id, self.layers)))
        remembered_key, steps = self._inference  # (one read: another thread may replace it meanwhile)
        if remembered_key != key:
            steps = inference_steps(self.layers, batch_shape, self.dtype, workers)
            self._inference = key, steps
        return steps

    def _multiply_adds_per_image(self) -> int:
        """The layers' multiply-adds for one input volume, nested ones included (worked out once per list of
        layers: a network pass over one image asks it)."""
        key = tuple(map(id, self.layers))
        if self._multiply_adds[0] != key:
            self._multiply_adds = key, sum(multiply_adds(layer) for layer in self.layers)
        return self._multiply_adds[1]

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dout`` (gradient w.r.t. the output) through every layer.

        Fills each parameter's ``grad`` and returns the gradient w.r.t. the
        input batch; ``input_grad=False`` (what training uses) skips that last
        gradient and returns None.
        """
        frozen = self.frozen_prefix
        if frozen and input_grad:
            which = f"layers 1-{frozen} are" if frozen > 1 else "layer 1 is"
            raise RuntimeError(f"{which} frozen and ran in inference mode, so there is no gradient to the input; "
                               "unfreeze (layer.trainable = True) to backpropagate that far")
        with threads.scheduler().network_pass(len(dout)) as workers:
            return backward_layers(self.layers[frozen:], dout, input_grad, workers)

    def params(self) -> list[Param]:
        """Every parameter with its gradient, first layer first."""
        return [p for layer in self.layers for p in layer.params()]

    def trainable_params(self) -> list[Param]:
        """The parameters of the layers not frozen (``layer.trainable``): what to build an optimizer on."""
        return [p for layer in self.layers if layer.trainable for p in layer.params()]

    @property
    def frozen(self) -> list[int]:
        """The frozen layers (1-based, as ``summary()`` numbers them) that hold parameters or buffers."""
        return frozen_layers(self.layers)

    @property
    def frozen_prefix(self) -> int:
        """How many first layers run in inference mode while training, because nothing in them trains.

        The layers before the first one with trainable parameters, when at least one of them is frozen
        (0 otherwise, and with nothing frozen). Like Keras' ``base_model(x, training=False)``: they keep
        no caches, BatchNorm uses (and keeps) its running averages, Dropout passes everything, and
        backpropagation stops at the first trainable layer, so no gradient is computed for them.
        """
        return frozen_prefix(self.layers)

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    def summary(self) -> str:
        """A plain-text table: every layer's output volume and parameter count.

        A container's description is cut to :data:`SUMMARY_WIDTH` characters;
        ``volnet.analysis.analyze(net).table()`` lists its nested layers row by row.
        """
        rows = [SUMMARY_HEADER, *self._summary_rows()]
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) if c in (1, 2) else cell.rjust(w)
                           for c, (cell, w) in enumerate(zip(row, widths))) for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append("-" * len(lines[0]))
        lines.append(f"total parameters: {self.num_params:,}")
        return "\n".join(lines)

    def _summary_rows(self) -> list[tuple[str, str, str, str]]:
        rows = [("", "INPUT", format_volume(self.input_shape), "0")]
        for index, (layer, shape) in enumerate(zip(self.layers, self.shapes), start=1):
            volume = format_volume((1, 1, *shape) if len(shape) == 1 else shape)
            text = repr(layer)
            if len(text) > SUMMARY_WIDTH:
                text = text[: SUMMARY_WIDTH - 3] + "..."
            rows.append((str(index), text, volume, f"{layer.num_params:,}"))
        return rows

    def _repr_html_(self) -> str:
        """:meth:`summary` as a table, for notebooks."""
        return html_table(SUMMARY_HEADER, self._summary_rows(), right=(0, 3),
                          title=f"Sequential: {len(self.layers)} layers, {self.num_params:,} parameters")

    def get_config(self) -> dict:
        """Everything needed to rebuild the architecture (not the weights)."""
        return {"input_shape": list(self.input_shape), "seed": self.seed, "dtype": self.dtype.name,
                "layers": [layer_config(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict, *, allocate: bool = True) -> Sequential:
        """The network :meth:`get_config` describes; ``allocate=False`` builds its shapes alone."""
        return cls([layer_from_config(c) for c in config["layers"]], config["input_shape"],
                   seed=config.get("seed", 0), dtype=config.get("dtype", "float32"), allocate=allocate)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __repr__(self):
        return f"Sequential({len(self.layers)} layers, input {format_volume(self.input_shape)})"


def multiply_adds(layer: Layer) -> int:
    """A built layer's multiply-adds for one input volume, its sublayers' included (:meth:`Layer.costs`)."""
    own = layer.costs(layer.input_shape, layer.output_shape(layer.input_shape)).macs
    return own + sum(multiply_adds(child) for _, child in layer.sublayers())
