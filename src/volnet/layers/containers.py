"""Containers: layers made of layers, for the branching nets of the zoo.

* :class:`Residual`       ``out = body(x) + shortcut(x)``, ResNet's skip connection.
* :class:`Concat`         branches run side by side on the same input, outputs
  stacked along depth.
* :class:`Inception`      GoogLeNet's module: a Concat of four fixed branches.

A container holds lists of layers (a *path*: the body, the shortcut, a
branch). Building it builds every child for the volume that flows in, in
order, with the network's random generator, and labels each child after the
container, so a shape error names ``layer 5 (Residual) body 2 (Conv2D)``.
:meth:`~volnet.layers.Layer.sublayers` lists the children as
``("body.1", layer)``, which gives parameters and buffers dotted names
(``body.1.weight``). Forward and backward run each path like a small
Sequential: a child keeps its cache only with ``train=True``, and the first
layer of a path skips its input gradient when the container is asked to.

``get_config()`` nests the children's configs (``{"body": [{"type":
"Conv2D", ...}], "shortcut": None}``) and ``from_config`` rebuilds them, so
``Sequential.from_config`` rebuilds nested networks.
"""

from __future__ import annotations

import math

import numpy as np

from ..shapes import ShapeError, format_volume
from .base import Costs, Keyword, Layer, layer_config, layer_from_config
from .inference import inference_steps, run_steps
from .paths import backward_layers, forward_layers
from .conv import Conv2D
from .dense import ReLU
from .pool import MaxPool

# -- paths: lists of layers run one after the other --------------------------


def _as_path(layers, what: str) -> list[Layer]:
    layers = list(layers)
    for j, layer in enumerate(layers, start=1):
        if not isinstance(layer, Layer):
            raise TypeError(f"{what} {j}: expected a volnet layer, got {layer!r}")
    return layers


def _label_path(layers: list[Layer], prefix: str) -> None:
    for j, layer in enumerate(layers, start=1):
        layer.label = f"{prefix} {j} ({type(layer).__name__})"


def _path_output_shape(layers: list[Layer], shape: tuple) -> tuple:
    for layer in layers:
        shape = layer.output_shape(shape)
    return shape


def _build_path(layers: list[Layer], shape: tuple, rng, dtype, allocate: bool) -> tuple:
    for layer in layers:
        shape = layer.build(shape, rng, dtype, allocate=allocate)
    return shape


def _path_repr(layers: list[Layer]) -> str:
    return "[" + ", ".join(repr(layer) for layer in layers) + "]"


# -- the containers ------------------------------------------------------------


class Residual(Layer):
    """Residual block: ``out = body(x) + shortcut(x)``, the shortcut being the identity by default.

    The body learns only what to add to its input (the residual), and the
    gradient reaches earlier layers through the shortcut undiminished, which
    is what lets ResNet stack 50 and more layers. The ReLU that ResNet puts
    after the addition is the next layer of the network, not part of the block.

    Args:
        body: the layers of the main path, first to last (at least one).
        shortcut: the layers of the skip path, or None for the identity.
            Default: None. Where the body changes the volume (a stride, more
            filters), the shortcut must change it the same way: a
            *projection*, a 1x1 CONV with the same stride and filters
            (and usually a BatchNorm).

    Input shape ``(H, W, D)`` (any shape the body accepts); output shape:
    the body's, which must equal the shortcut's.

    Parameters: those of the body and shortcut layers, named ``body.1.weight``,
    ``shortcut.1.weight``... (:meth:`sublayers`); initialised by each layer,
    body first, then shortcut, with the network's generator.

    Raises:
        ShapeError: when building, if the body's and shortcut's outputs
            differ (the message names both shapes and suggests a projection).
        ValueError: for an empty body.

    Example:
        >>> from volnet import Sequential
        >>> from volnet.layers import BatchNorm, Conv2D, ReLU
        >>> block = Residual([Conv2D(128, 3, S=2, P=1, fit="crop"), BatchNorm(), ReLU(),
        ...                   Conv2D(128, 3, P=1), BatchNorm()],
        ...                  shortcut=[Conv2D(128, 1, S=2, fit="crop"), BatchNorm()])
        >>> net = Sequential([block, ReLU()], input_shape=(56, 56, 64))
        >>> net.output_shape
        (28, 28, 128)
    """

    kind = "residual"
    keyword = Keyword("RES", branches=(1, 2), aliases=("RESIDUAL",))
    counted_in_notes = True
    merge = "add"

    def __init__(self, body: list[Layer], shortcut: list[Layer] | None = None):
        super().__init__()
        self.body = _as_path(body, "Residual body layer")
        if not self.body:
            raise ValueError("Residual: the body needs at least one layer")
        self.shortcut = _as_path(shortcut, "Residual shortcut layer") if shortcut else []

    def sublayers(self):
        return ([(f"body.{j}", layer) for j, layer in enumerate(self.body, start=1)]
                + [(f"shortcut.{j}", layer) for j, layer in enumerate(self.shortcut, start=1)])

    def _label_children(self):
        _label_path(self.body, f"{self.label} body")
        _label_path(self.shortcut, f"{self.label} shortcut")

    def output_shape(self, input_shape):
        self._label_children()
        input_shape = tuple(input_shape)
        body = _path_output_shape(self.body, input_shape)
        return self._check_sum(input_shape, body, _path_output_shape(self.shortcut, input_shape))

    def build(self, input_shape, rng, dtype=np.float32, allocate=True):
        self._label_children()
        self.input_shape = tuple(input_shape)
        body = _build_path(self.body, self.input_shape, rng, dtype, allocate)
        shortcut = _build_path(self.shortcut, self.input_shape, rng, dtype, allocate)
        return self._check_sum(self.input_shape, body, shortcut)

    def _check_sum(self, input_shape, body, shortcut):
        if body == shortcut:
            return body
        which = "shortcut" if self.shortcut else "identity shortcut"
        message = (f"{self.label}: the body gives {format_volume(body)} but the {which} gives "
                   f"{format_volume(shortcut)}; they must be equal to be added")
        if len(body) == 3 and len(input_shape) == 3:
            S = max(1, round(input_shape[0] / body[0]))
            stride = f", S={S}" if S > 1 else ""
            crop = ", fit='crop'" if (input_shape[0] - 1) % S or (input_shape[1] - 1) % S else ""
            message += (f". Use a projection shortcut from {format_volume(input_shape)} to "
                        f"{format_volume(body)}, e.g. shortcut=[Conv2D(K={body[2]}, F=1{stride}{crop}), "
                        "BatchNorm()] (a 1x1 CONV with the body's stride)")
        raise ShapeError(message)

    def forward(self, x, train=False, *, keep=None, workers=None):
        return (forward_layers(self.body, x, train, workers, keep)
                + forward_layers(self.shortcut, x, train, workers, keep))

    def inference_step(self, batch_shape, dtype, workers, norm=None, relu=None):
        """``x -> body(x) + shortcut(x)`` in inference, each path as its steps (``volnet.layers.inference``)."""
        body = inference_steps(self.body, batch_shape, dtype, workers)
        shortcut = inference_steps(self.shortcut, batch_shape, dtype, workers)
        return lambda x: run_steps(body, self.body, x) + run_steps(shortcut, self.shortcut, x)

    def backward(self, dout, input_grad=True, *, workers=None):
        dbody = backward_layers(self.body, dout, input_grad, workers)
        dshortcut = backward_layers(self.shortcut, dout, input_grad, workers)  # dout itself for the identity
        return dbody + dshortcut if input_grad else None

    def get_config(self):
        return {"body": [layer_config(layer) for layer in self.body],
                "shortcut": [layer_config(layer) for layer in self.shortcut] or None}

    @classmethod
    def from_config(cls, config):
        shortcut = config.get("shortcut")
        return cls([layer_from_config(c) for c in config["body"]],
                   None if shortcut is None else [layer_from_config(c) for c in shortcut])

    def __repr__(self):
        shortcut = f", shortcut={_path_repr(self.shortcut)}" if self.shortcut else ""
        return f"Residual(body={_path_repr(self.body)}{shortcut})"

    # -- the description of the kind (its children describe themselves) -------------
    def named_paths(self):
        return [("body", self.body), ("shortcut", self.shortcut)]

    def costs(self, input_shape, output_shape):
        return Costs(0, 0, math.prod(output_shape))  # the add

    @staticmethod
    def notation_paths(config: dict) -> list:
        """The chains the notation writes inside ``RES{ body | shortcut }``, from :meth:`get_config`."""
        return [config["body"]] + ([] if config.get("shortcut") is None else [config["shortcut"]])

    def to_torch(self, bridge, order):
        """:class:`volnet.interop.torch_modules.Residual`: ``body(x) + shortcut(x)``."""
        body, shortcut = bridge.path(self.body), bridge.path(self.shortcut)
        module = bridge.tm.Residual(bridge.sequential(body), bridge.sequential(shortcut))
        return bridge.step(self, [module], paths=[body, shortcut]), None

    def to_onnx(self, graph, x, input_shape):
        """The body's nodes (``layer5_body_1_conv``...), the shortcut's (or ``x``), then ``Add``."""
        body, _ = graph.path("body", self.body, x, input_shape)
        shortcut, _ = graph.path("shortcut", self.shortcut, x, input_shape)  # x itself for the identity
        return graph.op("Add", [body, shortcut], "add")


class Concat(Layer):
    """Branches side by side: each runs on the same input, and the outputs are stacked along depth.

    ``out[:, :, :] = [branch1(x) | branch2(x) | ...]`` along the depth axis,
    so every branch must produce the same height and width. An empty branch
    is the identity (it passes the input through).

    Args:
        branches: one list of layers per branch (at least one branch).

    Input shape ``(H, W, D)``; output shape ``(H2, W2, D_1 + D_2 + ...)``,
    where ``H2 x W2`` is every branch's output size and ``D_i`` the depth of
    branch i's output.

    Parameters: those of the branches' layers, named ``branch1.1.weight``,
    ``branch2.3.bias``...; initialised by each layer, branch by branch.

    Raises:
        ShapeError: when building, if the branches' outputs differ in height
            or width (the message lists every branch's output).
        ValueError: for no branches.

    Example:
        >>> from volnet import Sequential
        >>> from volnet.layers import Conv2D
        >>> net = Sequential([Concat([[Conv2D(16, 1)], [Conv2D(8, 3, P=1)]])], input_shape=(8, 8, 4))
        >>> net.output_shape, net.num_params   # (4*16 + 16) + (3*3*4*8 + 8)
        ((8, 8, 24), 376)
    """

    kind = "concat"
    keyword = Keyword("CONCAT", branches=(1, None))
    counted_in_notes = True
    merge = "depth concat"

    def __init__(self, branches: list[list[Layer]]):
        super().__init__()
        self.branches = [_as_path(branch, f"Concat branch {i} layer") for i, branch in enumerate(branches, 1)]
        if not self.branches:
            raise ValueError(f"{type(self).__name__}: needs at least one branch")
        self._depths: list[int] = []

    def sublayers(self):
        return [(f"branch{i}.{j}", layer) for i, branch in enumerate(self.branches, start=1)
                for j, layer in enumerate(branch, start=1)]

    def _label_children(self):
        for i, branch in enumerate(self.branches, start=1):
            _label_path(branch, f"{self.label} branch {i} layer")

    def output_shape(self, input_shape):
        self._label_children()
        return self._stack([_path_output_shape(branch, tuple(input_shape)) for branch in self.branches])

    def build(self, input_shape, rng, dtype=np.float32, allocate=True):
        self._label_children()
        self.input_shape = tuple(input_shape)
        return self._stack([_build_path(branch, self.input_shape, rng, dtype, allocate) for branch in self.branches])

    def _stack(self, shapes):
        if any(shape[:-1] != shapes[0][:-1] or len(shape) != len(shapes[0]) for shape in shapes):
            listed = ", ".join(f"branch {i} gives {format_volume(shape)}" for i, shape in enumerate(shapes, 1))
            raise ShapeError(f"{self.label}: the branches must give the same height x width to be stacked "
                             f"along depth, but {listed}; adjust their strides or padding")
        self._depths = [shape[-1] for shape in shapes]
        return (*shapes[0][:-1], sum(self._depths))

    def forward(self, x, train=False, *, keep=None, workers=None):
        return np.concatenate([forward_layers(branch, x, train, workers, keep) for branch in self.branches], axis=-1)

    def inference_step(self, batch_shape, dtype, workers, norm=None, relu=None):
        """``x ->`` the branches' outputs stacked along depth, in inference, each branch as its steps."""
        paths = [(inference_steps(branch, batch_shape, dtype, workers), branch) for branch in self.branches]
        return lambda x: np.concatenate([run_steps(steps, branch, x) for steps, branch in paths], axis=-1)

    def backward(self, dout, input_grad=True, *, workers=None):
        douts = np.split(dout, np.cumsum(self._depths)[:-1], axis=-1)
        dxs = [backward_layers(branch, d, input_grad, workers) for branch, d in zip(self.branches, douts)]
        return sum(dxs[1:], start=dxs[0]) if input_grad else None

    def get_config(self):
        return {"branches": [[layer_config(layer) for layer in branch] for branch in self.branches]}

    @classmethod
    def from_config(cls, config):
        return cls([[layer_from_config(c) for c in branch] for branch in config["branches"]])

    def __repr__(self):
        return f"{type(self).__name__}(branches=[{', '.join(_path_repr(b) for b in self.branches)}])"

    # -- the description of the kind (its children describe themselves) -------------
    def named_paths(self):
        return [(f"branch{i}", branch) for i, branch in enumerate(self.branches, start=1)]

    def costs(self, input_shape, output_shape):
        return Costs()  # stacking costs no operation

    @staticmethod
    def notation_paths(config: dict) -> list:
        """The chains the notation writes inside ``CONCAT{ a | b }``, from :meth:`get_config`."""
        return config["branches"]

    def to_torch(self, bridge, order):
        """:class:`volnet.interop.torch_modules.Concat`: the branches' outputs concatenated along channels."""
        branches = [bridge.path(branch) for branch in self.branches]
        return bridge.step(self, [bridge.tm.Concat([bridge.sequential(b) for b in branches])], paths=branches), None

    def to_onnx(self, graph, x, input_shape):
        """Each branch's nodes (``layer4_branch2_1_conv``...), then ``Concat`` along channels (axis 1)."""
        outs = [graph.path(f"branch{i}", branch, x, input_shape)[0] for i, branch in enumerate(self.branches, 1)]
        return graph.op("Concat", outs, "concat", axis=1)


class Inception(Concat):
    """GoogLeNet's inception module: 1x1, 3x3 and 5x5 CONVs and a 3x3 max pool, side by side.

    Four branches on the same input, stacked along depth (a :class:`Concat`)::

        branch 1: CONV1-c1 -> RELU
        branch 2: CONV1-c3_reduce -> RELU -> CONV3-c3 (P=1) -> RELU
        branch 3: CONV1-c5_reduce -> RELU -> CONV5-c5 (P=2) -> RELU
        branch 4: POOL3 (S=1, P=1) -> CONV1-pool_proj -> RELU

    The 1x1 "reduce" CONVs shrink the depth before the expensive 3x3 and
    5x5 filters, which is how GoogLeNet has 12 times fewer parameters than
    AlexNet. Every branch keeps the height and width (stride 1, 'same'
    padding; the max pool pads with -inf).

    Args (the columns of the GoogLeNet paper's table 1):
        c1: filters of the 1x1 branch ("#1x1").
        c3_reduce: 1x1 filters before the 3x3 CONV ("#3x3 reduce").
        c3: 3x3 filters ("#3x3").
        c5_reduce: 1x1 filters before the 5x5 CONV ("#5x5 reduce").
        c5: 5x5 filters ("#5x5").
        pool_proj: 1x1 filters after the max pool ("pool proj").

    Input shape ``(H, W, D)``; output shape ``(H, W, c1 + c3 + c5 + pool_proj)``.

    Parameters (weights and biases of the six CONVs):
    ``(D+1)*c1 + (D+1)*c3_reduce + (9*c3_reduce+1)*c3 + (D+1)*c5_reduce
    + (25*c5_reduce+1)*c5 + (D+1)*pool_proj``, He-normal weights, zero biases.

    Example:
        >>> from volnet import Sequential
        >>> net = Sequential([Inception(64, 96, 128, 16, 32, 32)], input_shape=(28, 28, 192))
        >>> net.output_shape, net.num_params   # GoogLeNet's inception (3a)
        ((28, 28, 256), 163696)
    """

    keyword = Keyword("INCEPTION", ("c1", "c3_reduce", "c3", "c5_reduce", "c5", "pool_proj"), positional=6)

    def __init__(self, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int):
        self.c1, self.c3_reduce, self.c3 = int(c1), int(c3_reduce), int(c3)
        self.c5_reduce, self.c5, self.pool_proj = int(c5_reduce), int(c5), int(pool_proj)
        super().__init__([
            [Conv2D(self.c1, 1), ReLU()],
            [Conv2D(self.c3_reduce, 1), ReLU(), Conv2D(self.c3, 3, P=1), ReLU()],
            [Conv2D(self.c5_reduce, 1), ReLU(), Conv2D(self.c5, 5, P=2), ReLU()],
            [MaxPool(3, 1, P=1), Conv2D(self.pool_proj, 1), ReLU()],
        ])

    def get_config(self):
        return {"c1": self.c1, "c3_reduce": self.c3_reduce, "c3": self.c3,
                "c5_reduce": self.c5_reduce, "c5": self.c5, "pool_proj": self.pool_proj}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    __repr__ = Layer.__repr__
