"""A volnet network as an ONNX model, built with ``onnx.helper`` from the layers' own descriptions.

Each layer kind emits its nodes itself (``Layer.to_onnx``, through the
:class:`~volnet.export.graph.Scope` interface); this module walks the
network, adds the input (with the optional normalisation) and the output,
and assembles the protobuf: opset 17, IR version 8 (pinned: an unpinned IR
version newer than the runtime reads is the most common load failure), a
dynamic batch dimension ``N``. See docs/export.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..files import atomic_write
from ..resources import describe_bytes, require_memory
from .graph import GraphBuilder

OPSET = 17
IR_VERSION = 8
LAYOUTS = ("nhwc", "nchw")
INPUT, OUTPUT = "input", "output"
EXPORT_OVERHEAD = 64 * 2**20  # the graph's nodes, the other fields, protobuf's buffers
INSTALL_HINT = ("pip install onnx onnxruntime (or, from the volnet repository folder, pip install '.[export]')")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(f"exporting to ONNX needs the onnx package, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return onnx


def input_description(net, normalizer=None, layout: str = "nhwc") -> str:
    """What the graph's input expects, in words (also stored in the model's doc string)."""
    H, W, D = net.input_shape
    dims = f"N x {H} x {W} x {D} (NHWC)" if layout == "nhwc" else f"N x {D} x {H} x {W} (NCHW)"
    if normalizer is not None:
        values = "raw pixels in [0, 1] (the graph subtracts the training mean and divides by the std per channel)"
    else:
        values = "images prepared exactly as for net.forward (normalised, if the net was trained normalised)"
    return f"{INPUT}: float32 {dims}, {values}"


def build_onnx(net, *, normalizer=None, layout: str = "nhwc", classes=None, probabilities: bool = False):
    """The ONNX ``ModelProto`` of ``net`` (a built :class:`~volnet.Sequential` with its weights).

    Args:
        net: the network; its weights are copied as float32 initializers.
        normalizer: a :class:`volnet.data.Normalizer` to put in the graph, so
            it takes raw pixels in [0, 1]; None: it takes what ``net.forward`` takes.
        layout: ``"nhwc"`` (volnet's ``(N, H, W, D)``) or ``"nchw"`` (``(N, D, H, W)``),
            for the input and for a volume output. Default: "nhwc".
        classes: class names, stored in the model's metadata (``classes``, a JSON list).
        probabilities: end the graph with a Softmax over the classes (the depth axis of a volume
            output), so it gives the probabilities ``volnet predict`` prints, not the class scores.

    The model holds a copy of every weight (twice the network's memory in all);
    :func:`to_onnx` writes the file without building it whole.

    Raises:
        ImportError: without the onnx package (the message says how to install it).
        ValueError: for an unknown layout, a net built with ``allocate=False``, or a
            normaliser for another number of channels.
        NotImplementedError: for a layer kind with no ONNX equivalent.
    """
    _onnx()
    from onnx import numpy_helper

    model, initializers = _model_without_weights(net, normalizer, layout, classes, probabilities)
    model.graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(array), name)
                                   for name, array in initializers.items())
    return model


def _model_without_weights(net, normalizer, layout: str, classes, probabilities: bool):
    """The ``ModelProto`` with no initializers, and the initializers by name (arrays, views where they can be)."""
    _onnx()
    from onnx import TensorProto, helper

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not getattr(net, "allocated", True):
        raise ValueError("the network was built with allocate=False: it has no weights to export")
    H, W, D = net.input_shape
    builder = GraphBuilder(np.float32)
    top = builder.scope(INPUT)
    x = INPUT
    if layout == "nhwc":
        x = top.op("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
    if normalizer is not None:
        mean, std = np.asarray(normalizer.mean).reshape(-1), np.asarray(normalizer.std).reshape(-1)
        if mean.size != D:
            raise ValueError(f"the normaliser has {mean.size} channels but the network's input has D = {D}")
        x = top.op("Sub", [x, top.weight("mean", mean.reshape(1, D, 1, 1))], "normalize_sub")
        x = top.op("Div", [x, top.weight("std", std.reshape(1, D, 1, 1))], "normalize_div")
    shape = net.input_shape
    for index, layer in enumerate(net.layers, start=1):
        x = builder.layer(layer, f"layer{index}", x, shape)
        shape = net.shapes[index - 1]
    if len(shape) == 3 and layout == "nhwc":
        x = builder.scope(OUTPUT).op("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
    if probabilities:  # over the last axis (the scores, or NHWC's depth), or NCHW's channels
        axis = 1 if len(shape) == 3 and layout == "nchw" else -1
        x = builder.scope(OUTPUT).op("Softmax", [x], "softmax", axis=axis)
    _rename_output(builder, x)

    nodes = [helper.make_node(op, inputs, outputs, name=name, **attributes)
             for op, inputs, outputs, name, attributes in builder.nodes]
    in_dims = ["N", H, W, D] if layout == "nhwc" else ["N", D, H, W]
    out_dims = ["N", *shape] if len(shape) != 3 or layout == "nhwc" else ["N", shape[2], shape[0], shape[1]]
    graph = helper.make_graph(
        nodes, "volnet", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, in_dims)],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, out_dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="volnet",
                              producer_version=_version(), ir_version=IR_VERSION)
    model.doc_string = input_description(net, normalizer, layout)
    metadata = {"layout": layout, "input": model.doc_string, "raw_pixels": str(normalizer is not None).lower(),
                "probabilities": str(probabilities).lower()}
    if normalizer is not None:
        metadata["normalizer"] = json.dumps(normalizer.get_config())
    if classes is not None:
        metadata["classes"] = json.dumps(list(classes))
    helper.set_model_props(model, metadata)
    return model, builder.initializers


def export_memory(net) -> int:
    """Bytes :func:`to_onnx` needs beside the network itself, from its parameter count alone.

    Each weight's initializer is at most a float32 copy of it (a transposed
    or reordered weight, a float64 net's weights cast), held from the
    graph's construction until it is written; the graph's nodes, the small
    initializers (BatchNorm's averages, shapes) and protobuf's structures
    take :data:`EXPORT_OVERHEAD` at most.

    >>> from volnet import Sequential
    >>> from volnet.layers import FC
    >>> (export_memory(Sequential([FC(10)], (4, 4, 2))) - EXPORT_OVERHEAD) // 4   # 32 x 10 weights, 10 biases
    330
    """
    return 4 * sum(p.value.size for p in net.params()) + EXPORT_OVERHEAD


def to_onnx(net, path, *, normalizer=None, layout: str = "nhwc", classes=None,
            probabilities: bool = False) -> Path:
    """Write ``net`` as an ONNX model to ``path`` (atomically: a temporary file, then a rename); returns the path.
    Arguments as :func:`build_onnx`.

    The file is the serialised :func:`build_onnx` model, written piece by
    piece: each weight goes from its array to the file, so the export needs
    about :func:`export_memory`, at most the network's float32 size more, and
    is refused beforehand (:class:`~volnet.resources.ResourceError`) when that
    is not available.

    Example (the graph takes raw pixels in [0, 1], NHWC, any batch size)::

        from volnet.export import to_onnx
        to_onnx(model.net, "lenet.onnx", normalizer=model.normalizer)
    """
    _onnx()  # its modules loaded before the memory they leave is measured
    require_memory(export_memory(net), "exporting the network to ONNX",
                   "free some memory or export on a machine with more")
    model, initializers = _model_without_weights(net, normalizer, layout, classes, probabilities)
    return atomic_write(path, lambda file: _write_model(file, model, initializers))


def _write_model(file, model, initializers: dict) -> None:
    """Write ``model`` with ``initializers`` added to its graph, as ``SerializeToString`` would, without
    holding the serialised weights in memory: one weight at a time, from its array to the file.

    Protobuf's wire format lets a message be written field by field: a
    length-delimited field is its key, its length and its bytes, and a
    message's fields may come in any order. So the model's other fields are
    serialised as usual, then the graph field, whose bytes are the graph
    without initializers followed by one ``initializer`` field per weight:
    a ``TensorProto`` with everything but ``raw_data`` serialised, then
    ``raw_data``'s key and length, then the array's bytes (little-endian,
    as ONNX stores them).
    """
    import onnx.checker
    from onnx import GraphProto, ModelProto, TensorProto, helper

    graph_field = ModelProto.DESCRIPTOR.fields_by_name["graph"].number
    initializer_field = GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
    raw_field = TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number
    tensors = []
    for name, array in initializers.items():
        header = TensorProto(name=name, dims=array.shape, data_type=helper.np_dtype_to_tensor_dtype(array.dtype))
        header = header.SerializeToString() + _field(raw_field, array.nbytes)
        tensors.append((_field(initializer_field, len(header) + array.nbytes) + header, array))
    graph = model.graph.SerializeToString()
    rest = ModelProto()
    rest.CopyFrom(model)
    rest.ClearField("graph")
    rest = rest.SerializeToString()
    graph_bytes = len(graph) + sum(len(head) + array.nbytes for head, array in tensors)
    size = len(rest) + len(_field(graph_field, graph_bytes)) + graph_bytes
    if size > onnx.checker.MAXIMUM_PROTOBUF:
        raise ValueError(f"the ONNX model would be {describe_bytes(size)}, over protobuf's limit of 2 GiB for one "
                         "message, which no ONNX runtime reads; volnet does not write ONNX's external data files")
    file.write(rest)
    file.write(_field(graph_field, graph_bytes))
    file.write(graph)
    for head, array in tensors:
        file.write(head)
        file.write(memoryview(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))).cast("B"))


def _field(number: int, length: int) -> bytes:
    """The key and length of a length-delimited protobuf field (wire type 2), as varints."""
    return _varint(number << 3 | 2) + _varint(length)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _rename_output(builder: GraphBuilder, last: str) -> None:
    """Name the graph's last tensor ``output`` (an Identity node when the net computes nothing)."""
    if last == INPUT:
        builder.add_node("Identity", [INPUT], OUTPUT, {})
        return
    builder.nodes = [(op, [OUTPUT if name == last else name for name in inputs],
                      [OUTPUT if name == last else name for name in outputs], node, attributes)
                     for op, inputs, outputs, node, attributes in builder.nodes]


def _version() -> str:
    from .. import __version__

    return __version__
