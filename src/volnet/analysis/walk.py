"""Walk a network's layers on shapes alone: one row per layer with its costs.

Every layer describes itself (:class:`volnet.layers.Layer`): its
``output_shape(input_shape)``, its ``kind``, its :meth:`~volnet.layers.Layer.costs`
(parameters, multiply-adds, other ops) and the :meth:`~volnet.layers.Layer.window`
its receptive field grows by; a container names its paths
(:meth:`~volnet.layers.Layer.named_paths`). The walk asks, and keeps no table
of layer kinds. Nothing is built or allocated, so the layers may be unbuilt
(a list of layer objects), built, or built with ``allocate=False``.

Counting conventions each layer's ``costs`` follows, per forward pass on one
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

from ..shapes import ShapeError
from .receptive_field import ReceptiveField, union


@dataclass(frozen=True)
class LayerRow:
    """One layer's output volume and costs (for one input volume; memory is in :class:`~volnet.analysis.Memory`).

    ``path`` is ``"3"`` for the third layer of the network and
    ``"5.body.2"`` for a layer inside a container, the dotted names that
    checkpoints use. ``kind`` is the layer's own (``"conv"``, ``"pool"``...,
    ``"other"`` for a type that does not describe itself). ``params``,
    ``macs`` and ``other_ops`` are the layer's own: a container's row holds
    only its merge (Residual's add), its children have rows of their own,
    so the column sums are the totals.
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


def _rf_after(layer, shape, out, rf: ReceptiveField, grid):
    """The receptive field after a leaf layer, and the spatial grid (H, W) its output covers.

    A window layer grows the field by its window; a layer whose neurons see
    the whole input (FC, global pooling) by the whole grid its input covers
    (an FC after Flatten: the flattened grid); any other passes it through.
    """
    window = layer.window(shape)
    if window is not None:
        return rf.through(*window), out[:2]
    if layer.sees_whole_input:
        return rf.through(grid, grid), (1, 1)
    return rf, out[:2] if len(out) == 3 else grid


def _label_error(error: ShapeError, path: str, layer) -> ShapeError:
    message = str(error)
    if message.startswith("layer "):  # a built network's labels already name the layer
        return error
    label = f"{layer.label}: "
    message = message[len(label):] if message.startswith(label) else message
    return ShapeError(f"layer {path} ({type(layer).__name__}): {message}")


def _output_shape(layer, shape, path) -> tuple:
    try:
        return tuple(layer.output_shape(shape))
    except ShapeError as error:
        raise _label_error(error, path, layer) from None


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
        path = f"{prefix}{(names or {}).get(id(layer)) or str(j)}"
        if layer.named_paths():
            node, shape, rf, grid = _walk_container(layer, shape, path, depth, rf, grid, rows)
        else:
            out = _output_shape(layer, shape, path)
            costs = layer.costs(shape, out)
            rf, grid = _rf_after(layer, shape, out, rf, grid)
            node = Node(LayerRow(path, repr(layer), layer.kind, depth, shape, out, costs.params, costs.macs,
                                 costs.other_ops, rf, costs.param_sizes, layer))
            rows.append(node.row)
            shape = out
        nodes.append(node)
    return nodes, shape, rf, grid, rows


def _walk_container(layer, shape, path, depth, rf, grid, rows):
    names = {id(child): f"{path}.{name}" for name, child in layer.sublayers()}  # the names checkpoints use
    paths, fields = [], []
    for group, members in layer.named_paths():
        fallback = {id(m): f"{path}.{group}.{j}" for j, m in enumerate(members, start=1)}
        nodes, _, path_rf, _, _ = walk(members, shape, prefix="", depth=depth + 1, rf=rf, grid=grid,
                                       names={**fallback, **names}, rows=rows)
        paths.append(nodes)
        fields.append(path_rf)
    out = _output_shape(layer, shape, path)
    costs = layer.costs(shape, out)
    row = LayerRow(path, f"{type(layer).__name__} ({layer.merge})", layer.kind, depth, shape, out, costs.params,
                   costs.macs, costs.other_ops, union(fields), (), layer)
    rows.append(row)
    return Node(row, paths), out, row.rf, out[:2] if len(out) == 3 else grid
