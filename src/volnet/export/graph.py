"""The small builder interface a layer emits its ONNX nodes through (layers never import onnx).

:class:`Scope` is what ``Layer.to_onnx(graph, x, input_shape)`` receives:
one layer's view of the graph under construction, with the layer's name
prefix (``"layer3"``, ``"layer5_body_2"``) so that every node it adds reads
in Netron as ``layer3_conv``, ``layer5_body_2_relu``. The layer returns the
name of its output tensor (or ``x`` itself when it computes nothing, like
Dropout in inference).

Inside the graph every volume is ``(N, D, H, W)`` (ONNX's Conv and pooling
operators are channels-first) and every vector ``(N, n)``; the exporter
transposes the graph's input and output to the layout asked for. The
shapes a layer is handed are volnet's per-volume ones, ``(H, W, D)`` or
``(n,)``, as everywhere else in volnet.
"""

from __future__ import annotations

import numpy as np


class GraphBuilder:
    """Collects nodes and initializers (weights) in plain lists; :mod:`volnet.export.onnx` makes the protobuf."""

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.nodes: list[tuple] = []  # (op_type, inputs, outputs, name, attributes)
        self.initializers: dict[str, np.ndarray] = {}

    def add_node(self, op_type: str, inputs: list[str], name: str, attributes: dict) -> str:
        if any(node[3] == name for node in self.nodes) or name in self.initializers:
            raise ValueError(f"ONNX export: the name {name!r} is used twice")
        self.nodes.append((op_type, list(inputs), [name], name, attributes))
        return name

    def add_initializer(self, name: str, array: np.ndarray) -> str:
        """Keep ``array`` as it is (often a transposed view of a layer's weights): the exporter makes each
        one contiguous only as it writes it, so that the weights are not all copied at once."""
        if name in self.initializers:
            raise ValueError(f"ONNX export: the initializer {name!r} is added twice")
        self.initializers[name] = np.asarray(array)
        return name

    def scope(self, prefix: str) -> Scope:
        return Scope(self, prefix)

    def layer(self, layer, prefix: str, x: str, input_shape: tuple) -> str:
        """Emit one layer's nodes under ``prefix``; its output name."""
        out = layer.to_onnx(self.scope(prefix), x, tuple(input_shape))
        if out is None:
            raise NotImplementedError(f"{layer.label}: {type(layer).__name__} has no ONNX export "
                                      "(it defines no to_onnx method)")
        return out

    def path(self, layers, prefix: str, x: str, input_shape: tuple) -> tuple[str, tuple]:
        """Emit a path of layers, first to last, the j-th (from 1) under ``{prefix}_{j}``: ``(output, shape)``."""
        shape = tuple(input_shape)
        for j, layer in enumerate(layers, start=1):
            x = self.layer(layer, f"{prefix}_{j}", x, shape)
            shape = layer.output_shape(shape)
        return x, shape


class Scope:
    """One layer's view of the graph: nodes and weights named after the layer.

    ``op("Conv", [x, w], "conv", strides=[1, 1])`` adds the node
    ``{prefix}_conv`` whose output tensor has the same name, and returns that
    name; ``weight("weight", w)`` adds a float initializer
    ``{prefix}_weight`` (cast to the graph's dtype), ``ints("shape", [0, -1])``
    an int64 one. ``path("body", layers, x, shape)`` emits a container's
    child path with names ``{prefix}_body_1``..., and returns ``(output, shape)``.
    """

    def __init__(self, builder: GraphBuilder, prefix: str):
        self.builder, self.prefix = builder, prefix

    def name(self, suffix: str) -> str:
        return f"{self.prefix}_{suffix}"

    def op(self, op_type: str, inputs: list[str], suffix: str, **attributes) -> str:
        return self.builder.add_node(op_type, inputs, self.name(suffix), attributes)

    def weight(self, suffix: str, array) -> str:
        return self.builder.add_initializer(self.name(suffix), np.asarray(array, dtype=self.builder.dtype))

    def ints(self, suffix: str, values) -> str:
        return self.builder.add_initializer(self.name(suffix), np.asarray(values, dtype=np.int64))

    def path(self, name: str, layers, x: str, input_shape: tuple) -> tuple[str, tuple]:
        return self.builder.path(layers, self.name(name), x, input_shape)

    @staticmethod
    def pads(pads) -> list[int]:
        """The ``pads`` attribute of a Conv or pooling node for volnet's geometry pads (see :func:`onnx_pads`)."""
        return onnx_pads(pads)

    def zero_pad(self, x: str, pads, suffix: str = "pad") -> str:
        """A ``Pad`` node adding zeros to the spatial borders of ``(N, D, H, W)`` (``x`` itself when no border
        grows); ``pads`` as volnet's geometry gives them, ``(top, bottom, left, right)``."""
        top, left, bottom, right = onnx_pads(pads)
        if not any((top, left, bottom, right)):
            return x
        return self.op("Pad", [x, self.ints(f"{suffix}s", [0, 0, top, left, 0, 0, bottom, right])], suffix)


def onnx_pads(pads) -> list[int]:
    """ONNX's ``[top, left, bottom, right]`` from volnet's geometry pads ``(top, bottom, left, right)``.

    ``fit="crop"`` gives a negative bottom/right (rows no window reaches): 0 there, since ONNX floors the
    output size, ``floor((H + top + bottom - F)/S) + 1``, which keeps volnet's size for any bottom between
    the negative one and P. ``fit="pad"`` gives a bottom/right larger than the top/left: ONNX pads
    asymmetrically as it is.
    """
    top, bottom, left, right = pads
    return [top, left, max(bottom, 0), max(right, 0)]
