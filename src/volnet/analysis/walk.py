"""Walk a network's layers on shapes alone: one row per layer with its costs.

Every layer is asked only for ``output_shape(input_shape)``; parameter
counts, multiply-adds and receptive fields come from its hyperparameters.
Nothing is built or allocated, so the layers may be unbuilt (a list of
layer objects), built, or built with ``allocate=False``.

Layers are recognised by class name along their MRO (so a subclass of
``Conv2D`` counts as a CONV, ``Inception`` as a ``Concat``), which needs no
import of the layer modules. Counting conventions, per forward pass on one
volume:

    MACs       multiply-adds of CONV, LocallyConnected and FC layers: one per
               weight per output position, ``(H2*W2*K) * (F*F*D1)`` for CONV and
               LC, ``fan_in * K`` for FC. Biases are not multiply-adds.
    FLOPs      ``2 * MACs`` (a multiply and an add). Published "FLOPs" are
               often multiply-adds; volnet reports both, labelled.
    other ops  everything that is not a multiply-add, one per operation:
               bias adds (one per output value of CONV/LC/FC), RELU's max
               (one per value), max pooling's comparisons (``F*F - 1`` per
               output), average pooling's adds and divide (``F*F`` per output),
               L2 pooling's squares, adds and root (``2*F*F`` per output),
               BatchNorm in inference (a scale and a shift per value),
               Residual's add (one per value). Dropout (the identity in
               inference), Flatten and Concat cost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..shapes import ShapeError, pair
from .receptive_field import ReceptiveField, union

# Class name (anywhere in the MRO) -> kind.
KINDS = {
    "Conv2D": "conv", "LocallyConnected": "local", "FC": "fc",
    "MaxPool": "pool", "AvgPool": "pool", "L2Pool": "pool", "_Pool": "pool",
    "GlobalAvgPool": "global_pool", "ReLU": "relu", "BatchNorm": "batchnorm", "Dropout": "dropout",
    "Flatten": "flatten", "Residual": "residual", "Concat": "concat",
}
WINDOW_KINDS = ("conv", "local", "pool")   # layers with F, S, P hyperparameters
CONTAINER_KINDS = ("residual", "concat")


def kind_of(layer) -> str:
    """``"conv"``, ``"fc"``, ``"pool"``... (see :data:`KINDS`); ``"other"`` for a type analysis does not know."""
    for cls in type(layer).__mro__:
        if cls.__name__ in KINDS:
            return KINDS[cls.__name__]
    if hasattr(layer, "branches"):
        return "concat"
    if hasattr(layer, "body"):
        return "residual"
    return "other"


@dataclass(frozen=True)
class LayerRow:
    """One layer's output volume and costs (for one input volume; memory is in :class:`~volnet.analysis.Memory`).

    ``path`` is ``"3"`` for the third layer of the network and
    ``"5.body.2"`` for a layer inside a container, the dotted names that
    checkpoints use. ``params``, ``macs`` and ``other_ops`` are the layer's
    own: a container's row holds only its merge (Residual's add), its
    children have rows of their own, so the column sums are the totals.
    """

    path: str
    name: str
    kind: str
    depth: int
    input_shape: tuple
    output_shape: tuple
    params: int
    macs: int
    other_ops: int
    rf: ReceptiveField
    param_sizes: tuple = ()
    layer: object = field(default=None, repr=False, compare=False)

    @property
    def activations(self) -> int:
        """Values in one output volume (``H2*W2*D2``), the notes' per-layer "memory"."""
        return math.prod(self.output_shape)

    @property
    def flops(self) -> int:
        """``2 * macs``: a multiply-add is two floating-point operations."""
        return 2 * self.macs


@dataclass
class Node:
    """A row and, for a container, its paths (Residual: body then shortcut; Concat: the branches)."""

    row: LayerRow
    paths: list[list[Node]] = field(default_factory=list)


def window(layer, kind: str, input_shape: tuple):
    """``(F, S, P, dilation)`` as ``(h, w)`` pairs for CONV, LC and POOL layers."""
    dilation = pair(getattr(layer, "dilation", 1), "dilation")
    return (pair(layer.F, "F"), pair(layer.S, "S"), pair(getattr(layer, "P", 0), "P"),
            dilation if kind != "pool" else (1, 1))


def _costs(layer, kind, shape, out):
    """``(params, macs, other_ops, param_sizes)`` of a layer that is not a container."""
    n_out = math.prod(out)
    if kind in ("conv", "local"):
        (Fh, Fw), D, K = pair(layer.F, "F"), shape[2], out[2]
        positions = out[0] * out[1]
        weights = Fh * Fw * D * K
        biases = K if getattr(layer, "bias", True) else 0
        if kind == "local":
            weights, biases = positions * weights, positions * biases
        return weights + biases, positions * K * Fh * Fw * D, positions * K if biases else 0, (weights, biases)
    if kind == "fc":
        fan_in, K = math.prod(shape), out[-1]
        return fan_in * K + K, fan_in * K, K, (fan_in * K, K)
    if kind == "pool":
        taps = math.prod(pair(layer.F, "F"))
        per_output = {"max": taps - 1, "avg": taps, "l2": 2 * taps}.get(getattr(layer, "mode", "max"), taps)
        return 0, 0, n_out * per_output, ()
    if kind == "global_pool":
        return 0, 0, math.prod(shape), ()
    if kind == "relu":
        return 0, 0, n_out, ()
    if kind == "batchnorm":
        return 2 * shape[-1], 0, 2 * n_out, (shape[-1], shape[-1])
    if kind in ("dropout", "flatten"):
        return 0, 0, 0, ()
    # A layer type analysis does not know: count what a built layer holds.
    sizes = tuple(p.value.size for p in layer.params()) if hasattr(layer, "params") else ()
    return sum(sizes), 0, 0, sizes


def _rf_after(layer, kind, shape, out, rf: ReceptiveField, grid):
    """The receptive field after a leaf layer, and the spatial grid (H, W) its output covers."""
    if kind in WINDOW_KINDS:
        F, S, P, dilation = window(layer, kind, shape)
        return rf.through(F, S, P, dilation), out[:2]
    if kind == "global_pool" or (kind == "fc" and len(shape) == 3):
        extent = shape[:2]
        return rf.through(extent, extent), (1, 1)
    if kind == "fc":  # on a vector: after Flatten it covers the flattened grid, after FC just (1, 1)
        return rf.through(grid, grid), (1, 1)
    return rf, out[:2] if len(out) == 3 else grid


def _as_path(layers) -> list:
    """A container's path (list of layers, a single layer, or None for the identity) as a list."""
    if layers is None:
        return []
    if hasattr(layers, "layers") and not hasattr(layers, "output_shape"):
        return list(layers.layers)
    if isinstance(layers, (list, tuple)):
        return list(layers)
    return [layers]


def _child_names(layer) -> dict[int, str]:
    """``id(child) -> "body.2"`` from the container's :meth:`sublayers`, the names checkpoints use."""
    try:
        return {id(child): name for name, child in layer.sublayers()}
    except Exception:  # a container without sublayers(): names are made up below
        return {}


def _label_error(error: ShapeError, path: str, layer) -> ShapeError:
    message = str(error)
    if message.startswith("layer "):  # a built network's labels already name the layer
        return error
    label = f"{getattr(layer, 'label', '')}: "
    message = message[len(label):] if message.startswith(label) else message
    return ShapeError(f"layer {path} ({type(layer).__name__}): {message}")


def walk(layers, input_shape, *, prefix: str = "", depth: int = 0, rf: ReceptiveField | None = None,
         grid=None, names: dict | None = None, rows: list | None = None):
    """Rows of every layer, in data-flow order, and the tree of :class:`Node` for ``layers``.

    Returns ``(nodes, output_shape, rf, grid, rows)``; containers' rows come
    after their children's (the merge happens last).
    """
    rows = [] if rows is None else rows
    rf = ReceptiveField() if rf is None else rf
    shape = tuple(input_shape)
    grid = tuple(shape[:2]) if grid is None and len(shape) == 3 else (grid or (1, 1))
    nodes = []
    for j, layer in enumerate(layers, start=1):
        path = (names or {}).get(id(layer)) or str(j)
        path = f"{prefix}{path}"
        kind = kind_of(layer)
        if kind in CONTAINER_KINDS:
            node, shape, rf, grid = _walk_container(layer, kind, shape, path, depth, rf, grid, rows)
        else:
            try:
                out = tuple(layer.output_shape(shape))
            except ShapeError as error:
                raise _label_error(error, path, layer) from None
            params, macs, other, sizes = _costs(layer, kind, shape, out)
            rf, grid = _rf_after(layer, kind, shape, out, rf, grid)
            node = Node(LayerRow(path, repr(layer), kind, depth, shape, out, params, macs, other, rf, sizes, layer))
            rows.append(node.row)
            shape = out
        nodes.append(node)
    return nodes, shape, rf, grid, rows


def _walk_container(layer, kind, shape, path, depth, rf, grid, rows):
    names = {i: f"{path}.{name}" for i, name in _child_names(layer).items()}
    if kind == "residual":
        groups = [("body", _as_path(layer.body)), ("shortcut", _as_path(getattr(layer, "shortcut", None)))]
    else:
        groups = [(f"branch{i}", _as_path(b)) for i, b in enumerate(layer.branches, start=1)]
    paths, fields = [], []
    for group, members in groups:
        fallback = {id(m): f"{path}.{group}.{j}" for j, m in enumerate(members, start=1)}
        nodes, _, path_rf, _, _ = walk(members, shape, prefix="", depth=depth + 1, rf=rf, grid=grid,
                                       names={**fallback, **names}, rows=rows)
        paths.append(nodes)
        fields.append(path_rf)
    try:
        out = tuple(layer.output_shape(shape))
    except ShapeError as error:
        raise _label_error(error, path, layer) from None
    name = f"{type(layer).__name__} (add)" if kind == "residual" else f"{type(layer).__name__} (depth concat)"
    other = math.prod(out) if kind == "residual" else 0
    row = LayerRow(path, name, kind, depth, shape, out, 0, 0, other, union(fields), (), layer)
    rows.append(row)
    return Node(row, paths), out, row.rf, out[:2] if len(out) == 3 else grid
