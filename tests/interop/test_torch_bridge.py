"""to_torch / from_torch: the PyTorch model computes what the volnet network computes.

Every zoo architecture of CIFAR size (the ImageNet ones are checked on
shapes alone) and a set of small networks that exercise the awkward cases
(fit="pad"/"crop", dilation, padded and avg/L2 pooling, BatchNorm on volumes
and on flattened vectors, Dropout, explicit Flatten, CONV without biases,
residual and concatenating containers) are converted and run in both
libraries on the same batch.
"""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from volnet import Sequential  # noqa: E402
from volnet.interop import from_torch, to_torch, torch_bridge  # noqa: E402
from volnet.layers import (FC, AvgPool, BatchNorm, Concat, Conv2D, Dropout, Flatten, GlobalAvgPool,  # noqa: E402
                           Inception, L2Pool, LocallyConnected, MaxPool, ReLU, Residual)
from volnet.zoo import ARCHITECTURES, build_named  # noqa: E402

# The zoo at its own input sizes, but for ImageNet's 224x224x3 (too slow to run in a test).
ZOO = [name for name in ARCHITECTURES if build_named(name, allocate=False).input_shape[0] <= 32]
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}

# Small networks for the cases the zoo does not reach; the comments give each output volume.
SPECIAL = {
    # (16-3)/2 and (14-3)/2 do not divide: fit="pad" pads bottom/right by one row/column.
    "pad-bn-dilation-avg": (lambda: [
        Conv2D(6, 3, S=2, fit="pad"), BatchNorm(), ReLU(),   # 8x7x6
        MaxPool(3, 2, fit="pad"),                            # 4x3x6 (one padded row)
        Conv2D(8, 3, P=2, dilation=2), ReLU(),               # 4x3x8
        AvgPool(3, 2, fit="pad"),                            # 2x1x8 (one padded row, counted in the mean)
        Dropout(0.3), FC(5)], (16, 14, 3)),
    # Crop drops the column no filter reaches; BatchNorm sees the flattened (permuted) vector.
    "crop-l2-flatten-bn1d": (lambda: [
        Conv2D(4, 4, S=3, P=1, fit="crop"), ReLU(),          # 6x5x4
        L2Pool(2, 2, fit="pad"),                             # 3x3x4
        Dropout(0.2), Flatten(), BatchNorm(), ReLU(), FC(7)], (17, 15, 2)),
    "crop-pools-1x1": (lambda: [
        Conv2D(4, 3, P=1), ReLU(),                           # 11x11x4
        AvgPool(2, 2, fit="crop"),                           # 5x5x4
        MaxPool(2, 2, fit="crop"),                           # 2x2x4
        L2Pool(2, 2, fit="crop"),                            # 1x1x4
        FC(6), BatchNorm(eps=1e-3, momentum=0.3), ReLU(), FC(3)], (11, 11, 3)),
    # S > F: fit="pad" drops a window that would hold padding only (as ceil_mode does).
    "stride-over-window": (lambda: [
        MaxPool(1, 3, fit="pad"),                            # 2x3x2
        AvgPool(1, 3, fit="pad"),                            # 1x1x2
        Flatten(), FC(4)], (5, 7, 2)),
    "pool-padding-no-bias": (lambda: [
        Conv2D(5, 3, P=1, bias=False), BatchNorm(), ReLU(),  # 9x10x5
        MaxPool(3, 1, P=1),                                  # 9x10x5
        AvgPool(3, 2, P=1, fit="pad"),                       # 5x6x5 (a second padded column on the right)
        L2Pool(3, 2, P=1, fit="crop"), FC(4)], (9, 10, 3)),  # 3x3x5
    "containers": (lambda: [
        Conv2D(6, 3, P=1), ReLU(),                           # 8x8x6
        Residual([Conv2D(6, 3, P=1), BatchNorm(), ReLU(), Conv2D(6, 3, P=1)]), ReLU(),
        Residual([Conv2D(10, 3, S=2, P=1, fit="crop"), BatchNorm()],
                 shortcut=[Conv2D(10, 1, S=2, fit="crop", bias=False), BatchNorm()]),  # 4x4x10
        Concat([[Conv2D(3, 1)], [], [MaxPool(3, 1, P=1), Conv2D(2, 3, P=1)]]),        # 4x4x15
        Inception(4, 3, 5, 2, 3, 2),                         # 4x4x14
        GlobalAvgPool(), FC(5)], (8, 8, 3)),
    # No PyTorch module of its own: unfold + a batched multiply (volnet.interop.torch_modules.LocallyConnected2d).
    "locally-connected": (lambda: [
        LocallyConnected(4, 3, S=2, fit="pad"), ReLU(),      # 4x4x4 (one padded column)
        LocallyConnected(3, (2, 3), P=1, S=(2, 1), fit="crop"),  # 2x4x3
        BatchNorm(), ReLU(), LocallyConnected(2, 1), FC(3)], (9, 8, 2)),
    "rectangular": (lambda: [
        Conv2D(3, (3, 5), S=(1, 2), P=(1, 0), fit="pad"), ReLU(),   # 10x5x3 (one padded column)
        MaxPool((2, 3), (2, 1)), FC(4)], (10, 12, 2)),               # 5x3x3
}


def nchw(x: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def build(name: str, dtype=np.float64, seed: int = 0) -> Sequential:
    if name in ARCHITECTURES:
        net = build_named(name, seed=seed)
        return Sequential.from_config({**net.get_config(), "dtype": np.dtype(dtype).name})
    layers, input_shape = SPECIAL[name]
    return Sequential(layers(), input_shape, seed=seed, dtype=dtype)


def randomise_buffers(net: Sequential, rng) -> None:
    """Give BatchNorm running statistics other than 0 and 1, so that copying them matters."""
    for layer in net.layers:
        for name, buffer in layer.named_buffers().items():
            low = 0.5 if name.endswith("running_var") else -1.0
            buffer[...] = rng.uniform(low, 1.5, buffer.shape)


def net_arrays(net: Sequential) -> list[np.ndarray]:
    """Every parameter and buffer array, in network order."""
    return [p.value for p in net.params()] + [b for layer in net.layers for b in layer.named_buffers().values()]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", [*ZOO, *SPECIAL])
def test_eval_outputs_equal(name, dtype, rng):
    net = build(name, dtype)
    randomise_buffers(net, rng)
    x = rng.standard_normal((2, *net.input_shape)).astype(dtype)
    model = to_torch(net).eval()
    with torch.no_grad():
        theirs = model(nchw(x)).numpy()
    ours = net.forward(x, train=False)
    assert theirs.dtype == dtype and theirs.shape == ours.shape
    # rounding errors scale with the largest scores (float32 deep nets with random buffers reach ~1e3),
    # not with each score: a small score next to large ones is as uncertain in absolute terms
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(theirs, ours, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale)


def test_fit_pad_uses_asymmetric_padding_and_crop_relies_on_floor():
    net = build("pad-bn-dilation-avg")
    modules = list(to_torch(net))
    assert isinstance(modules[0], torch.nn.ZeroPad2d) and modules[0].padding == (0, 1, 0, 1)
    assert modules[1].padding == (0, 0)
    crop = list(to_torch(build("crop-l2-flatten-bn1d")))[0]
    assert isinstance(crop, torch.nn.Conv2d) and crop.padding == (1, 1)


def test_volume_output_comes_back_nchw(rng):
    net = Sequential([Conv2D(5, 3, S=2, fit="pad"), ReLU()], (8, 9, 3), dtype=np.float64)
    x = rng.standard_normal((2, 8, 9, 3))
    with torch.no_grad():
        theirs = to_torch(net)(nchw(x)).numpy()
    np.testing.assert_allclose(theirs.transpose(0, 2, 3, 1), net.forward(x), rtol=1e-10, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*ZOO, *SPECIAL])
def test_round_trip_gives_identical_weights(name, rng):
    original = build(name, np.float32, seed=0)
    randomise_buffers(original, rng)
    copy = build(name, np.float32, seed=1)
    arrays_before = net_arrays(copy)
    from_torch(to_torch(original), copy)
    for ours, theirs, live in zip(net_arrays(original), net_arrays(copy), arrays_before):
        assert theirs is live  # written in place
        assert theirs.dtype == ours.dtype and np.array_equal(theirs, ours)


def test_weights_trained_in_torch_come_back(rng):
    net = build("crop-l2-flatten-bn1d")
    model = to_torch(net)
    x = nchw(rng.standard_normal((4, *net.input_shape)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()  # also moved the BatchNorm running averages (training mode)
    model.eval()
    from_torch(model, net)
    with torch.no_grad():
        theirs = model(x).numpy()
    np.testing.assert_allclose(net.forward(x.numpy().transpose(0, 2, 3, 1)), theirs, rtol=1e-10, atol=1e-10)


def assert_gradients_equal_autograd(net, rng, batch):
    """volnet's scores, input gradient and parameter gradients equal PyTorch's autograd on ``to_torch(net)``
    (train mode, float64); returns a copy of ``net`` holding torch's parameter gradients as its values."""
    model = to_torch(net).train()
    x = rng.standard_normal((batch, *net.input_shape))
    scores = net.forward(x, train=True)
    dscores = rng.standard_normal(scores.shape)
    dx = net.backward(dscores)
    x_torch = nchw(x).requires_grad_(True)
    scores_torch = model(x_torch)
    scores_torch.backward(torch.from_numpy(dscores))
    np.testing.assert_allclose(scores_torch.detach().numpy(), scores, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(x_torch.grad.numpy().transpose(0, 2, 3, 1), dx, rtol=1e-9, atol=1e-10)
    # Read torch's gradients back through from_torch: it maps them to volnet's layouts like the weights.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.grad)
    grads = from_torch(model, Sequential.from_config(net.get_config()))
    for ours, theirs in zip(net.params(), grads.params()):
        np.testing.assert_allclose(theirs.value, ours.grad, rtol=1e-9, atol=1e-10, err_msg=ours.name)
    return grads


def test_training_gradients_equal_autograd(rng):
    """volnet's backward and PyTorch's autograd give the same input and parameter gradients (train mode)."""
    net = Sequential([Conv2D(4, 3, S=2, fit="pad"), BatchNorm(), ReLU(),
                      Residual([Conv2D(4, 3, P=1), BatchNorm(), ReLU(), Conv2D(4, 3, P=1, bias=False)]), ReLU(),
                      MaxPool(2, 2, fit="pad"), Concat([[Conv2D(3, 1)], [], [MaxPool(3, 1, P=1)]]),
                      Conv2D(6, 2, dilation=2, P=1), ReLU(), L2Pool(2, 1), AvgPool(2, 1, fit="pad"),
                      Flatten(), BatchNorm(), ReLU(), FC(8), ReLU(), FC(5)], (13, 10, 3), dtype=np.float64)
    grads = assert_gradients_equal_autograd(net, rng, batch=6)
    # The running averages moved the same way in both (they came back with the gradients).
    for ours, theirs in zip(net.layers, grads.layers):
        for name, buffer in ours.named_buffers().items():
            np.testing.assert_allclose(theirs.named_buffers()[name], buffer, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_zoo_volume_has_the_same_size_in_torch(name):
    """torch's floored/ceil-mode sizes equal volnet's fit="crop"/"pad" sizes, layer by layer, at full size.

    Runs on the meta device: shapes only, no weights (VGG-16 included).
    """
    net = build_named(name, allocate=False)
    _, tm = torch_bridge._import_torch()
    with torch.device("meta"):
        steps = torch_bridge._plan_path(net.layers, tm)
        x = torch.empty(1, net.input_shape[2], *net.input_shape[:2])
        for step, shape in zip(steps, net.shapes):
            for module in step.modules:
                x = module(x)
            expected = (shape[2], *shape[:2]) if len(shape) == 3 else shape
            assert tuple(x.shape[1:]) == expected, step.layer.label


def test_ending_on_a_flattened_volume_is_refused():
    net = Sequential([Conv2D(2, 3), Flatten()], (5, 5, 3))
    with pytest.raises(NotImplementedError, match="follow it with an FC layer"):
        to_torch(net)
    inside = Sequential([Concat([[Flatten()], [Flatten()]]), FC(2)], (2, 2, 3))
    with pytest.raises(NotImplementedError, match="branch 1 layer 1"):
        to_torch(inside)


def test_layers_without_a_torch_module_are_refused(monkeypatch):
    from volnet.layers import Layer

    monkeypatch.setattr(LocallyConnected, "to_torch", Layer.to_torch)  # a kind that describes no PyTorch module
    net = Sequential([LocallyConnected(2, 3), FC(2)], (5, 5, 3))
    with pytest.raises(NotImplementedError, match="no equivalent for LocallyConnected"):
        to_torch(net)


def test_locally_connected_gradients_equal_autograd(rng):
    """LocallyConnected2d's autograd gives volnet's input and parameter gradients, padded, strided, cropped."""
    net = Sequential([LocallyConnected(3, 3, S=2, P=1, fit="pad"), ReLU(), LocallyConnected(2, (2, 1), fit="crop"),
                      FC(4)], (8, 7, 2), dtype=np.float64)
    assert_gradients_equal_autograd(net, rng, batch=3)


def test_locally_connected_with_one_shared_filter_is_a_convolution(rng):
    """The notes' identity, in PyTorch: every position given the same filter, LocallyConnected2d == Conv2d."""
    local = Sequential([LocallyConnected(3, 3, S=2, P=1), FC(2)], (7, 7, 2), dtype=np.float64)
    conv = Sequential([Conv2D(3, 3, S=2, P=1), FC(2)], (7, 7, 2), dtype=np.float64)
    weight, bias = (p.value for p in conv.layers[0].params())
    local.layers[0].params()[0].value[...] = weight
    local.layers[0].params()[1].value[...] = bias
    for ours, theirs in zip(local.layers[1].params(), conv.layers[1].params()):
        ours.value[...] = theirs.value
    x = nchw(rng.standard_normal((2, 7, 7, 2)))
    with torch.no_grad():
        np.testing.assert_allclose(to_torch(local)(x).numpy(), to_torch(conv)(x).numpy(), rtol=1e-12, atol=1e-12)


def test_a_network_without_weights_is_refused():
    with pytest.raises(ValueError, match="allocate=False"):
        to_torch(build_named("lenet", allocate=False))


def test_from_torch_refuses_another_architecture():
    model = to_torch(build("notes"))
    with pytest.raises(ValueError, match="does not match"):
        from_torch(model, build("lenet"))
    other = Sequential([Conv2D(12, 5, P=2), ReLU(), MaxPool(2, 2), FC(10)], (28, 28, 3))
    with pytest.raises(ValueError, match="has shape"):
        from_torch(model, other)


def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        to_torch(build("notes"))


def test_docstring_example():
    assert doctest.testmod(torch_bridge).failed == 0


def test_importing_volnet_interop_does_not_import_torch():
    code = "import sys, volnet.interop; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
