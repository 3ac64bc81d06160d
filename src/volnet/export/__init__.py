"""Export a network to ONNX (``volnet export CHECKPOINT model.onnx``); see docs/export.md.

:func:`to_onnx` writes the file, :func:`build_onnx` returns the model. Each
layer kind emits its own nodes (``Layer.to_onnx``) through the builder
interface of :mod:`volnet.export.graph`, so layers never import onnx; the
onnx package is imported only when a model is built (``pip install onnx
onnxruntime``, or ``pip install '.[export]'`` from the repository folder).
"""

from .onnx_model import INSTALL_HINT, IR_VERSION, LAYOUTS, OPSET, build_onnx, input_description, to_onnx

__all__ = ["to_onnx", "build_onnx", "input_description", "OPSET", "IR_VERSION", "LAYOUTS", "INSTALL_HINT"]
