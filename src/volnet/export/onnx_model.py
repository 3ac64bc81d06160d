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
import os
import tempfile
from pathlib import Path

import numpy as np

from .graph import GraphBuilder

OPSET = 17
IR_VERSION = 8
LAYOUTS = ("nhwc", "nchw")
INPUT, OUTPUT = "input", "output"
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

    Raises:
        ImportError: without the onnx package (the message says how to install it).
        ValueError: for an unknown layout, a net built with ``allocate=False``, or a
            normaliser for another number of channels.
        NotImplementedError: for a layer kind with no ONNX equivalent.
    """
    _onnx()
    from onnx import TensorProto, helper, numpy_helper

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
        x = builder.scope(OUTPUT).op("Softmax", [x], "softmax", axis=1 if len(shape) == 3 and layout == "nchw" else -1)
    _rename_output(builder, x)

    nodes = [helper.make_node(op, inputs, outputs, name=name, **attributes)
             for op, inputs, outputs, name, attributes in builder.nodes]
    initializers = [numpy_helper.from_array(array, name) for name, array in builder.initializers.items()]
    in_dims = ["N", H, W, D] if layout == "nhwc" else ["N", D, H, W]
    out_dims = ["N", *shape] if len(shape) != 3 or layout == "nhwc" else ["N", shape[2], shape[0], shape[1]]
    graph = helper.make_graph(
        nodes, "volnet", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, in_dims)],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, out_dims)], initializer=initializers)
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
    return model


def to_onnx(net, path, *, normalizer=None, layout: str = "nhwc", classes=None, probabilities: bool = False):
    """Write ``net`` as an ONNX model to ``path`` (atomically: a temporary file, then a rename); returns the
    ``ModelProto``. Arguments as :func:`build_onnx`.

    Example (the graph takes raw pixels in [0, 1], NHWC, any batch size)::

        from volnet.export import to_onnx
        to_onnx(model.net, "lenet.onnx", normalizer=model.normalizer)
    """
    onnx = _onnx()
    model = build_onnx(net, normalizer=normalizer, layout=layout, classes=classes, probabilities=probabilities)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        onnx.save_model(model, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return model


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
