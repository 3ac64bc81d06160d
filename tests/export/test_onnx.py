"""volnet.export.to_onnx: the ONNX model computes what the volnet network computes.

Every model passes ``onnx.checker.check_model(full_check=True)`` and is run by
onnxruntime (CPU) and, where it takes seconds, by ``onnx.reference.ReferenceEvaluator``
(pure NumPy: every CIFAR-size zoo net and ResNet-18 at 224x224; the other
ImageNet-size nets take from tens of seconds to minutes there, see
docs/export.md), on the same batch as ``net.forward``; scores agree within
1e-4 of the largest score. Small networks cover every layer kind and the
awkward geometry (strides, pads, dilation, fit="pad"/"crop", the pooling
modes), in both layouts, with and without the normaliser.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx.reference import ReferenceEvaluator  # noqa: E402
from strategies import window_settings  # noqa: E402

from volnet import Sequential, ShapeError  # noqa: E402
from volnet.cli import main  # noqa: E402
from volnet.data import Normalizer  # noqa: E402
from volnet.export import INSTALL_HINT, IR_VERSION, OPSET, build_onnx, to_onnx  # noqa: E402
from volnet.layers import (FC, AvgPool, BatchNorm, Concat, Conv2D, Dropout, Flatten, GlobalAvgPool,  # noqa: E402
                           Inception, L2Pool, Layer, LocallyConnected, MaxPool, ReLU, Residual)
from volnet.zoo import ARCHITECTURES, build_named  # noqa: E402

RTOL = 1e-4  # relative to the largest score
SMALL = [name for name in ARCHITECTURES if build_named(name, allocate=False).input_shape[0] <= 32]
LARGE = [name for name in ARCHITECTURES if name not in SMALL]
# The ReferenceEvaluator runs these ImageNet-size nets in 1-3 s (batch 1, 2 cores); vgg16 takes 11 s and
# googlenet 38 s (its padded max pools loop in Python), so those two, and vgg19, are run by onnxruntime alone.
REFERENCE_LARGE = {"alexnet", "zfnet", "resnet18", "resnet34", "resnet50"}
# googlenet-cifar's padded max pools take the ReferenceEvaluator 9 s; the small "inception" case below covers them.
REFERENCE_SMALL_SKIP = {"googlenet-cifar"}


def random_buffers(net, seed=0):
    """BatchNorm statistics and scales away from the identity, so a wrong mapping shows."""
    rng = np.random.default_rng(seed)
    for top in net.layers:
        for _, layer in top.named_layers():
            if isinstance(layer, BatchNorm):
                D = layer.running_mean.size
                layer.running_mean[:] = rng.normal(size=D)
                layer.running_var[:] = rng.uniform(0.5, 2.0, size=D)
                layer.params()[0].value[:] = rng.uniform(0.5, 1.5, size=D)
                layer.params()[1].value[:] = rng.normal(size=D)
    return net


def to_layout(x, layout):
    return x.transpose(0, 3, 1, 2).copy() if layout == "nchw" and x.ndim == 4 else x


def from_layout(y, layout):
    return y.transpose(0, 2, 3, 1) if layout == "nchw" and y.ndim == 4 else y


def run_ort(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def run_reference(model, x):
    return ReferenceEvaluator(model).run(None, {"input": x})[0]


def assert_close(got, expected):
    assert got.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-12)
    np.testing.assert_allclose(got / scale, expected / scale, rtol=0, atol=RTOL)


def check_export(net, *, layout="nhwc", normalizer=None, batch=2, reference=True, seed=0):
    """Export, check, and compare onnxruntime (and the ReferenceEvaluator) with net.forward."""
    model = build_onnx(net, layout=layout, normalizer=normalizer)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(seed).random((batch, *net.input_shape), dtype=np.float32)  # raw pixels in [0, 1)
    expected = net.forward(normalizer(x) if normalizer is not None else x, train=False)
    assert_close(from_layout(run_ort(model, to_layout(x, layout)), layout), expected)
    if reference:
        assert_close(from_layout(run_reference(model, to_layout(x, layout)), layout), expected)
    return model


# -- the zoo -----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", SMALL)
def test_every_small_zoo_net_exports_and_computes_the_same_scores(name):
    check_export(random_buffers(build_named(name, seed=1)), reference=name not in REFERENCE_SMALL_SKIP)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_every_imagenet_zoo_net_exports_and_computes_the_same_scores(name):
    check_export(random_buffers(build_named(name, seed=1)), batch=1, reference=name in REFERENCE_LARGE)


# -- every layer kind, and the awkward geometry ---------------------------------------------------

CASES = {
    "conv-stride-pad-fit-pad": (lambda: [Conv2D(4, 3, S=2, P=1, fit="pad"), ReLU(), FC(5)], (12, 11, 3)),
    "conv-fit-crop-no-bias": (lambda: [Conv2D(4, 3, S=2, fit="crop", bias=False), FC(3)], (10, 9, 2)),
    "conv-dilation-rectangular": (lambda: [Conv2D(3, (3, 2), S=(1, 2), P=(2, 1), dilation=(2, 1)), FC(4)],
                                  (9, 8, 2)),
    "maxpool-fit-pad-padded": (lambda: [MaxPool(3, 2, fit="pad"), MaxPool(3, 1, P=1), FC(3)], (10, 9, 2)),
    "maxpool-crop": (lambda: [MaxPool(3, 2, P=1, fit="crop"), FC(3)], (10, 9, 2)),
    "avgpool-padded-fit-pad": (lambda: [AvgPool(3, 2, P=1), AvgPool(2, 2, fit="pad"), FC(3)], (11, 9, 2)),
    "avgpool-crop": (lambda: [AvgPool(3, 2, P=1, fit="crop"), FC(3)], (10, 10, 2)),
    "l2pool-padded-fit-pad": (lambda: [L2Pool(3, 2, P=1), L2Pool(2, 2, fit="pad"), FC(3)], (11, 9, 2)),
    "l2pool-crop": (lambda: [L2Pool(2, 2, fit="crop"), FC(3)], (9, 9, 2)),
    "batchnorm-volume-and-vector": (lambda: [Conv2D(4, 3), BatchNorm(), ReLU(), Flatten(), BatchNorm(eps=1e-3),
                                             FC(6), BatchNorm(), ReLU(), FC(3)], (7, 6, 3)),
    "dropout-flatten-fc-fc": (lambda: [Dropout(0.5), Flatten(), FC(7), ReLU(), Dropout(0.2), FC(3)], (5, 4, 3)),
    "global-avg-pool": (lambda: [Conv2D(5, 3, P=1), GlobalAvgPool(), FC(3)], (6, 7, 2)),
    "residual-identity-and-projection": (lambda: [
        Residual([Conv2D(3, 3, P=1), BatchNorm(), ReLU(), Conv2D(3, 3, P=1)]),
        Residual([Conv2D(4, 3, S=2, P=1, fit="crop")], shortcut=[Conv2D(4, 1, S=2, fit="crop"), BatchNorm()]),
        ReLU(), FC(3)], (8, 7, 3)),
    "concat-with-identity-branch": (lambda: [Concat([[Conv2D(2, 1)], [], [MaxPool(3, 1, P=1), Conv2D(3, 3, P=1)]]),
                                             FC(3)], (6, 6, 2)),
    "inception": (lambda: [Inception(2, 2, 3, 1, 2, 2), ReLU(), FC(3)], (7, 7, 3)),
    "locally-connected": (lambda: [LocallyConnected(3, 3), ReLU(), LocallyConnected(2, (2, 3), S=2, P=1, fit="pad"),
                                   FC(3)], (8, 9, 2)),
    "locally-connected-crop": (lambda: [LocallyConnected(3, 3, S=2, fit="crop"), FC(2)], (8, 8, 3)),
    "volume-output": (lambda: [Conv2D(4, 3, S=2, P=1, fit="pad"), ReLU(), MaxPool(2, fit="crop")], (9, 9, 3)),
}


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("case", CASES)
def test_every_layer_kind_exports_in_both_layouts(case, layout):
    layers, shape = CASES[case]
    check_export(random_buffers(Sequential(layers(), shape, seed=2)), layout=layout)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("case", ["batchnorm-volume-and-vector", "residual-identity-and-projection", "volume-output"])
def test_the_normaliser_in_the_graph_takes_raw_pixels(case, layout):
    layers, shape = CASES[case]
    rng = np.random.default_rng(3)
    normalizer = Normalizer(rng.uniform(0.2, 0.8, shape[2]), rng.uniform(0.1, 0.5, shape[2]))
    model = check_export(Sequential(layers(), shape, seed=2), layout=layout, normalizer=normalizer)
    assert [node.name for node in model.graph.node if node.op_type in ("Sub", "Div")] == \
        ["input_normalize_sub", "input_normalize_div"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["raw_pixels"] == "true" and "raw pixels in [0, 1]" in model.doc_string


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setting=window_settings(), kind=st.sampled_from(["conv", "local"]))
def test_random_window_geometry_matches(setting, kind):
    hyper = setting["hyper"]
    if kind == "local":
        if hyper["dilation"] != (1, 1):
            hyper = {**hyper, "dilation": (1, 1)}
        layer = LocallyConnected(setting["K"], setting["F"], S=hyper["stride"], P=hyper["pad"], fit=hyper["fit"])
    else:
        layer = Conv2D(setting["K"], setting["F"], S=hyper["stride"], P=hyper["pad"], dilation=hyper["dilation"],
                       fit=hyper["fit"])
    try:
        net = Sequential([layer], setting["x_shape"][1:], seed=setting["seed"] % 1000)
    except ShapeError:  # local layers drew the geometry with dilation: it may no longer fit
        return
    net.layers[0].params()[-1].value[:] = 0.1  # non-zero biases
    check_export(net, batch=setting["x_shape"][0], reference=False)


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from([MaxPool, AvgPool, L2Pool]), F=st.integers(1, 4), S=st.integers(1, 3),
       P=st.integers(0, 2), fit=st.sampled_from([None, "pad", "crop"]), H=st.integers(3, 9), W=st.integers(3, 9))
def test_random_pooling_geometry_matches(mode, F, S, P, fit, H, W):
    try:
        net = Sequential([mode(F, S, P=P, fit=fit)], (H, W, 2))
    except ShapeError:
        return
    check_export(net, reference=False)


# -- the model's form ------------------------------------------------------------------------------

@pytest.mark.slow
def test_opset_ir_version_dynamic_batch_and_readable_names():
    net = random_buffers(build_named("resnet18-cifar", seed=1))
    model = build_onnx(net)
    assert model.ir_version == IR_VERSION == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)] and OPSET == 17
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 32, 32, 3]
    assert [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == ["N", 10]
    names = {node.name for node in model.graph.node}
    assert {"input_to_nchw", "layer1_conv", "layer2_batchnorm", "layer3_relu", "layer4_body_1_conv",
            "layer4_body_3_relu", "layer4_add"} <= names
    for batch in (1, 3):
        check_export(net, batch=batch, reference=False)


def test_nchw_layout_has_no_transpose_and_a_volume_output_is_in_the_layout():
    net = Sequential(CASES["volume-output"][0](), CASES["volume-output"][1])
    model = build_onnx(net, layout="nchw")
    assert "Transpose" not in {node.op_type for node in model.graph.node}
    assert [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == ["N", 4, 2, 2]


def test_dropout_is_removed():
    model = build_onnx(Sequential([Dropout(0.5), FC(3)], (2, 2, 1)))
    assert [node.op_type for node in model.graph.node] == ["Transpose", "Flatten", "Gemm"]
    assert [node.name for node in model.graph.node] == ["input_to_nchw", "layer2_flatten", "layer2_gemm"]


def test_to_onnx_writes_a_file_that_loads(tmp_path):
    net = build_named("lenet", seed=1)
    path = tmp_path / "sub" / "lenet.onnx"
    to_onnx(net, path, classes=list("0123456789"))
    model = onnx.load(path)
    onnx.checker.check_model(str(path), full_check=True)
    assert json.loads({p.key: p.value for p in model.metadata_props}["classes"]) == list("0123456789")
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["lenet.onnx"]  # no temporary file left


# -- errors ----------------------------------------------------------------------------------------

def test_clear_errors():
    with pytest.raises(ValueError, match="allocate=False"):
        build_onnx(build_named("lenet", allocate=False))
    with pytest.raises(ValueError, match="layout must be one of nhwc, nchw"):
        build_onnx(build_named("lenet"), layout="hwc")
    with pytest.raises(ValueError, match="normaliser has 3 channels"):
        build_onnx(build_named("lenet"), normalizer=Normalizer([0, 0, 0], [1, 1, 1]))

    class Mystery(Layer):
        def output_shape(self, input_shape):
            return input_shape

    with pytest.raises(NotImplementedError, match=r"layer 1 \(Mystery\): Mystery has no ONNX export"):
        build_onnx(Sequential([Mystery()], (2, 2, 1)))


def test_without_onnx_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(ImportError) as info:
        build_onnx(build_named("lenet"))
    assert "pip install onnx onnxruntime" in str(info.value) and "'.[export]'" in str(info.value)
    assert INSTALL_HINT in str(info.value)


# -- the command line ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_cli_export_with_raw_pixels_matches_the_checkpoint(checkpoint, tmp_path, capsys, layout):
    from volnet.train.checkpoint import load_model

    path = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), str(path), "--layout", layout, "--raw-pixels"]) == 0
    printed = capsys.readouterr().out
    assert "raw pixels in [0, 1]" in printed and str(path) in printed
    net, normalizer, _, _ = load_model(checkpoint)
    assert normalizer is not None
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(4).random((5, *net.input_shape), dtype=np.float32)
    assert_close(run_ort(model, to_layout(x, layout)), net.forward(normalizer(x)))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["layout"] == layout and props["classes"].startswith('["0"')


def test_cli_export_without_raw_pixels_expects_normalised_images(checkpoint, tmp_path, capsys):
    from volnet.train.checkpoint import load_model

    path = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), str(path)]) == 0
    assert "--raw-pixels" in capsys.readouterr().out  # says the graph wants normalised images, and how not to
    net, normalizer, _, _ = load_model(checkpoint)
    x = normalizer(np.random.default_rng(5).random((2, *net.input_shape), dtype=np.float32))
    assert_close(run_ort(onnx.load(path), x), net.forward(x))


def test_cli_export_errors(checkpoint, tmp_path, capsys, monkeypatch):
    assert main(["export", str(tmp_path / "missing.safetensors"), str(tmp_path / "m.onnx")]) == 1
    assert "volnet export: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", str(checkpoint), str(tmp_path / "m.onnx"), "--layout", "hwc"])
    assert info.value.code == 2 and "--layout" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(checkpoint), str(tmp_path / "m.onnx")]) == 1
    error = capsys.readouterr().err
    assert "pip install onnx onnxruntime" in error and not (tmp_path / "m.onnx").exists()
