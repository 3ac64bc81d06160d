"""volnet export --probabilities: the graph ends with a Softmax and gives what predict gives."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import volnet  # noqa: E402
from volnet import Sequential  # noqa: E402
from volnet.cli import main  # noqa: E402
from volnet.export import build_onnx  # noqa: E402
from volnet.layers import Conv2D, ReLU  # noqa: E402


def run_ort(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_exported_softmax_equals_predict_in_onnxruntime(checkpoint, tmp_path, capsys, layout):
    path = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), str(path), "--raw-pixels", "--probabilities", "--layout", layout]) == 0
    assert "class probabilities (softmax)" in capsys.readouterr().out
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.node[-1].op_type == "Softmax" and model.graph.node[-1].output == ["output"]
    assert {p.key: p.value for p in model.metadata_props}["probabilities"] == "true"
    x = volnet.data.load("mnist5k", split="test").images[::97]
    given = x if layout == "nhwc" else x.transpose(0, 3, 1, 2)
    expected = volnet.load(checkpoint).predict(x)
    got = run_ort(model, np.ascontiguousarray(given))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-6)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_without_the_flag_the_graph_still_gives_scores(checkpoint, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), str(path)]) == 0
    assert "class scores (before softmax)" in capsys.readouterr().out
    model = onnx.load(path)
    assert all(node.op_type != "Softmax" for node in model.graph.node)
    assert {p.key: p.value for p in model.metadata_props}["probabilities"] == "false"


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_a_volume_output_gets_a_softmax_over_its_depth(layout):
    net = Sequential([Conv2D(5, 3), ReLU(), Conv2D(4, 1)], input_shape=(6, 7, 2), seed=3)
    x = np.random.default_rng(0).random((3, 6, 7, 2), dtype=np.float32)
    scores = net.forward(x, train=False).astype(np.float64)
    expected = np.exp(scores - scores.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    model = build_onnx(net, layout=layout, probabilities=True)
    onnx.checker.check_model(model, full_check=True)
    given = x if layout == "nhwc" else x.transpose(0, 3, 1, 2)
    got = run_ort(model, np.ascontiguousarray(given))
    if layout == "nchw":
        got = got.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
