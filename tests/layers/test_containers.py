"""Containers (Residual, Concat, Inception, GlobalAvgPool): gradient checks, PyTorch parity, configs, shape errors."""

import json

import numpy as np
import pytest

from volnet import Sequential, ShapeError
from volnet.layers import (FC, BatchNorm, Concat, Conv2D, GlobalAvgPool, Inception, MaxPool, ReLU, Residual,
                           layer_config, layer_from_config)


def _float64_net(layers, input_shape, seed=0):
    net = Sequential(layers, input_shape=input_shape, seed=seed, dtype=np.float64)
    x = np.random.default_rng(seed + 1).standard_normal((2, *input_shape))
    return net, x


def _basic_block(filters, stride=1, project=False):
    crop = "crop" if stride > 1 else None
    body = [Conv2D(filters, 3, S=stride, P=1, fit=crop, bias=False), BatchNorm(), ReLU(),
            Conv2D(filters, 3, P=1, bias=False), BatchNorm()]
    shortcut = [Conv2D(filters, 1, S=stride, fit=crop, bias=False), BatchNorm()] if project else None
    return Residual(body, shortcut)


# ---------------------------------------------------------------------------
# Gradient checks (float64)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layers, input_shape", [
    pytest.param([_basic_block(3), ReLU()], (4, 5, 3), id="residual-identity-bn"),
    pytest.param([_basic_block(4, stride=2, project=True), ReLU()], (6, 5, 2), id="residual-projection-bn"),
    pytest.param([Residual([Conv2D(2, 3, P=1), BatchNorm(), ReLU()]), FC(3)], (4, 4, 2), id="residual-bias-bn"),
    pytest.param([Concat([[Conv2D(2, 1)], [Conv2D(3, 3, P=1), ReLU()], [], [MaxPool(3, 1, P=1)]])], (4, 5, 2),
                 id="concat-with-identity-branch"),
    pytest.param([Inception(2, 2, 3, 1, 2, 2)], (5, 5, 3), id="inception"),
    pytest.param([Conv2D(3, 3), GlobalAvgPool(), FC(2)], (5, 6, 2), id="global-avg-pool"),
    pytest.param([Residual([Concat([[Conv2D(1, 1)], [Residual([Conv2D(3, 3, P=1)]), Conv2D(1, 1)]]),
                            Conv2D(3, 1)])], (3, 4, 3), id="nested"),
])
def test_container_gradients(layers, input_shape, check_net_grad):
    net, x = _float64_net(layers, input_shape)
    check_net_grad(net, x)


@pytest.mark.parametrize("first", [
    pytest.param(lambda: _basic_block(3), id="residual-identity"),
    pytest.param(lambda: _basic_block(3, stride=2, project=True), id="residual-projection"),
    pytest.param(lambda: Inception(2, 1, 2, 1, 2, 1), id="inception"),
])
def test_first_container_skips_its_input_gradient_when_asked(first):
    # Inside the container the other layers still need their input gradients: parameter
    # gradients must be the same whether or not the network asks for dx.
    net, x = _float64_net([first(), ReLU(), FC(3)], (6, 6, 3))
    dout = np.random.default_rng(2).standard_normal((2, 3))
    net.forward(x, train=True)
    assert net.backward(dout, input_grad=False) is None
    without = [p.grad.copy() for p in net.params()]
    net.forward(x, train=True)
    assert net.backward(dout).shape == x.shape
    for a, b in zip(without, (p.grad for p in net.params())):
        np.testing.assert_array_equal(a, b)


def test_identity_residual_adds_the_input():
    # With the body's last CONV zeroed, the block is the identity: out = 0 + x.
    block = Residual([Conv2D(3, 3, P=1)])
    net = Sequential([block], input_shape=(4, 4, 3), dtype=np.float64)
    for p in block.params():
        p.value[...] = 0
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 3))
    np.testing.assert_array_equal(net.forward(x), x)
    net.forward(x, train=True)
    dout = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_array_equal(net.backward(dout), dout)  # the shortcut carries dout back unchanged


def test_global_avg_pool_is_the_mean_of_each_depth_slice():
    x = np.random.default_rng(0).standard_normal((3, 5, 4, 6))
    net = Sequential([GlobalAvgPool()], input_shape=(5, 4, 6), dtype=np.float64)
    out = net.forward(x, train=True)
    np.testing.assert_allclose(out, x.mean(axis=(1, 2), keepdims=True), rtol=1e-12)
    dx = net.backward(np.ones_like(out))
    np.testing.assert_allclose(dx, np.full(x.shape, 1 / 20), rtol=1e-12)
    assert net.num_params == 0


def test_concat_stacks_branch_outputs_along_depth():
    a, b = Conv2D(2, 1), Conv2D(3, 3, P=1)
    net = Sequential([Concat([[a], [b], []])], input_shape=(4, 4, 2), dtype=np.float64)
    assert net.output_shape == (4, 4, 7)
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 2))
    out = net.forward(x)
    np.testing.assert_allclose(out[..., :2], a.forward(x), rtol=1e-12)
    np.testing.assert_allclose(out[..., 2:5], b.forward(x), rtol=1e-12)
    np.testing.assert_array_equal(out[..., 5:], x)


def test_inference_keeps_no_caches_in_any_child():
    net = Sequential([_basic_block(2, stride=2, project=True), Inception(1, 1, 1, 1, 1, 1), GlobalAvgPool()],
                     input_shape=(6, 6, 2))
    x = np.zeros((2, 6, 6, 2), dtype=np.float32)
    net.forward(x, train=True)
    leaves = [layer for top in net for _, layer in top.named_layers() if not layer.sublayers()]
    assert all(layer._cache is not None for layer in leaves)
    net.forward(x, train=False)
    assert all(layer._cache is None for top in net for _, layer in top.named_layers())


# ---------------------------------------------------------------------------
# PyTorch parity (float64, batch statistics)
# ---------------------------------------------------------------------------

def _copy_param_to_torch(torch, nchw, value):
    return nchw.filters_to_torch(value) if value.ndim == 4 else torch.tensor(value)


def test_residual_block_matches_torch(torch, nchw, rng):
    """ResNet's downsampling block, BatchNorm in training: out = relu(body(x) + projection(x))."""
    net = Sequential([_basic_block(4, stride=2, project=True), ReLU()], input_shape=(7, 8, 3), dtype=np.float64)
    named = dict(net[0].named_params())
    x = rng.standard_normal((2, 7, 8, 3))
    out = net.forward(x, train=True)
    dout = rng.standard_normal(out.shape)
    dx = net.backward(dout)

    t = {name: _copy_param_to_torch(torch, nchw, p.value).requires_grad_() for name, p in named.items()}
    F = torch.nn.functional

    def bn(v, prefix):
        return F.batch_norm(v, None, None, t[f"{prefix}.gamma"], t[f"{prefix}.beta"], training=True, eps=1e-5)

    xt = nchw.to_torch(x, requires_grad=True)
    body = F.relu(bn(F.conv2d(xt, t["body.1.weight"], stride=2, padding=1), "body.2"))
    body = bn(F.conv2d(body, t["body.4.weight"], padding=1), "body.5")
    shortcut = bn(F.conv2d(xt, t["shortcut.1.weight"], stride=2), "shortcut.2")
    out_t = F.relu(body + shortcut)
    out_t.backward(nchw.to_torch(dout))

    assert out.shape == (2, 4, 4, 4)  # width (8 - 3 + 2)/2 + 1 = 4.5: torch floors, like fit="crop"
    np.testing.assert_allclose(out, nchw.from_torch(out_t), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, nchw.from_torch(xt.grad), rtol=1e-9, atol=1e-10)
    for name, p in named.items():
        expected = nchw.filters_from_torch(t[name].grad) if p.value.ndim == 4 else t[name].grad.numpy()
        np.testing.assert_allclose(p.grad, expected, rtol=1e-9, atol=1e-10, err_msg=name)


def test_inception_module_matches_torch(torch, nchw, rng):
    """GoogLeNet's module as a hand-built torch graph: four branches, concatenated along channels."""
    net = Sequential([Inception(3, 2, 4, 2, 3, 2)], input_shape=(6, 7, 5), dtype=np.float64)
    named = dict(net[0].named_params())
    x = rng.standard_normal((2, 6, 7, 5))
    out = net.forward(x, train=True)
    dout = rng.standard_normal(out.shape)
    dx = net.backward(dout)

    t = {name: _copy_param_to_torch(torch, nchw, p.value).requires_grad_() for name, p in named.items()}
    F = torch.nn.functional

    def conv(v, branch, index, padding=0):
        return F.relu(F.conv2d(v, t[f"branch{branch}.{index}.weight"], t[f"branch{branch}.{index}.bias"],
                               padding=padding))

    xt = nchw.to_torch(x, requires_grad=True)
    out_t = torch.cat([conv(xt, 1, 1),
                       conv(conv(xt, 2, 1), 2, 3, padding=1),
                       conv(conv(xt, 3, 1), 3, 3, padding=2),
                       conv(F.max_pool2d(xt, 3, 1, padding=1), 4, 2)], dim=1)
    out_t.backward(nchw.to_torch(dout))

    assert out.shape == (2, 6, 7, 3 + 4 + 3 + 2)
    np.testing.assert_allclose(out, nchw.from_torch(out_t), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, nchw.from_torch(xt.grad), rtol=1e-10, atol=1e-12)
    for name, p in named.items():
        expected = nchw.filters_from_torch(t[name].grad) if p.value.ndim == 4 else t[name].grad.numpy()
        np.testing.assert_allclose(p.grad, expected, rtol=1e-10, atol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------
# Names, configs
# ---------------------------------------------------------------------------

def test_sublayers_give_dotted_parameter_and_buffer_names():
    net = Sequential([_basic_block(4, stride=2, project=True), Concat([[Conv2D(1, 1)], [MaxPool(3, 1, P=1)]])],
                     input_shape=(6, 6, 2))
    residual, concat = net
    assert [name for name, _ in residual.sublayers()] == ["body.1", "body.2", "body.3", "body.4", "body.5",
                                                          "shortcut.1", "shortcut.2"]
    assert [name for name, _ in residual.named_params()] == [
        "body.1.weight", "body.2.gamma", "body.2.beta", "body.4.weight", "body.5.gamma", "body.5.beta",
        "shortcut.1.weight", "shortcut.2.gamma", "shortcut.2.beta"]
    bns = ("body.2", "body.5", "shortcut.2")
    assert sorted(residual.named_buffers()) == sorted(f"{layer}.{buffer}" for layer in bns
                                                      for buffer in ("running_mean", "running_var"))
    assert [name for name, _ in concat.named_params()] == ["branch1.1.weight", "branch1.1.bias"]
    assert [name for name, _ in concat.sublayers()] == ["branch1.1", "branch2.1"]
    assert residual.num_params == 3 * 3 * 2 * 4 + 8 + 3 * 3 * 4 * 4 + 8 + 2 * 4 + 8
    assert net[0].body[0].label == "layer 1 (Residual) body 1 (Conv2D)"
    assert net[1].branches[1][0].label == "layer 2 (Concat) branch 2 layer 1 (MaxPool)"


def _mixed_net(seed=0, dtype=np.float32):
    return Sequential([Conv2D(4, 3, P=1), BatchNorm(), ReLU(),
                       _basic_block(4), ReLU(),
                       _basic_block(6, stride=2, project=True), ReLU(),
                       Inception(2, 2, 3, 1, 2, 2),
                       Concat([[Conv2D(2, 1)], [], [Residual([Conv2D(9, 3, P=1)])]]),
                       GlobalAvgPool(), FC(3)], input_shape=(8, 8, 3), seed=seed, dtype=dtype)


def test_config_round_trip_rebuilds_nested_networks():
    net = _mixed_net(seed=7)
    config = json.loads(json.dumps(net.get_config()))  # plain JSON all the way down
    assert config["layers"][3]["type"] == "Residual"
    assert config["layers"][3]["shortcut"] is None
    assert config["layers"][5]["shortcut"][0] == {"type": "Conv2D", **net[5].shortcut[0].get_config()}
    assert config["layers"][7] == {"type": "Inception", "c1": 2, "c3_reduce": 2, "c3": 3, "c5_reduce": 1,
                                   "c5": 2, "pool_proj": 2}
    rebuilt = Sequential.from_config(config)
    assert rebuilt.shapes == net.shapes and rebuilt.output_shape == (3,)
    assert rebuilt.get_config() == net.get_config()
    assert repr(rebuilt[5]) == repr(net[5])
    original = [(name, p.value) for layer in net for name, p in layer.named_params()]
    again = [(name, p.value) for layer in rebuilt for name, p in layer.named_params()]
    assert [name for name, _ in original] == [name for name, _ in again]
    for (name, a), (_, b) in zip(original, again):
        np.testing.assert_array_equal(a, b, err_msg=name)  # same seed, same weights
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.forward(x), net.forward(x))


@pytest.mark.parametrize("layer", [
    Residual([Conv2D(2, 3, P=1), ReLU()]),
    Residual([Conv2D(2, 3, S=2, fit="crop")], [Conv2D(2, 1, S=2, fit="crop", bias=False), BatchNorm()]),
    Concat([[Conv2D(1, 1)], [], [MaxPool(3, 1, P=1)]]),
    Inception(64, 96, 128, 16, 32, 32),
    GlobalAvgPool(),
])
def test_layer_config_rebuilds_each_container(layer):
    rebuilt = layer_from_config(json.loads(json.dumps(layer_config(layer))))
    assert type(rebuilt) is type(layer)
    assert rebuilt.get_config() == layer.get_config() and repr(rebuilt) == repr(layer)


def test_reprs():
    assert repr(Inception(64, 96, 128, 16, 32, 32)) == \
        "Inception(c1=64, c3_reduce=96, c3=128, c5_reduce=16, c5=32, pool_proj=32)"
    assert repr(Residual([Conv2D(8, 3, P=1)], [Conv2D(8, 1, S=2)])) == \
        "Residual(body=[Conv2D(K=8, F=3, P=1)], shortcut=[Conv2D(K=8, F=1, S=2)])"
    assert repr(Concat([[ReLU()], []])) == "Concat(branches=[[ReLU()], []])"
    assert repr(GlobalAvgPool()) == "GlobalAvgPool()"


def test_inception_matches_googlenet_table():
    # Szegedy et al. 2014, table 1, inception (3a) on 28x28x192: output 28x28x256.
    net = Sequential([Inception(64, 96, 128, 16, 32, 32)], input_shape=(28, 28, 192), allocate=False)
    assert net.output_shape == (28, 28, 256)
    assert net.num_params == (193 * 64) + (193 * 96) + (9 * 96 + 1) * 128 + (193 * 16) + (25 * 16 + 1) * 32 + 193 * 32


# ---------------------------------------------------------------------------
# Shape errors
# ---------------------------------------------------------------------------

def test_residual_shape_mismatch_suggests_a_projection():
    with pytest.raises(ShapeError) as info:
        Sequential([Conv2D(4, 3, P=1), Residual([Conv2D(8, 3, S=2, P=1, fit="crop"), ReLU(), Conv2D(8, 3, P=1)])],
                   input_shape=(16, 16, 3))
    message = str(info.value)
    assert "layer 2 (Residual)" in message
    assert "8x8x8" in message and "16x16x4" in message and "identity shortcut" in message
    assert "projection" in message and "Conv2D(K=8, F=1, S=2, fit='crop')" in message


def test_residual_shape_mismatch_with_a_shortcut_names_both_shapes():
    with pytest.raises(ShapeError, match=r"layer 1 \(Residual\): the body gives 4x4x8 but the shortcut gives 4x4x6"):
        Sequential([Residual([Conv2D(8, 1, S=2)], [Conv2D(6, 1, S=2)])], input_shape=(7, 7, 3))


def test_child_errors_name_the_container():
    with pytest.raises(ShapeError, match=r"layer 2 \(Residual\) body 2 \(Conv2D\): height: \(W - F \+ 2P\)/S"):
        Sequential([ReLU(), Residual([ReLU(), Conv2D(4, 4, S=2)])], input_shape=(9, 9, 1))
    with pytest.raises(ShapeError, match=r"layer 1 \(Concat\) branch 3 layer 2 \(Conv2D\): .*does not fit"):
        Sequential([Concat([[ReLU()], [ReLU()], [ReLU(), Conv2D(1, 5)]])], input_shape=(3, 3, 1))


def test_concat_shape_mismatch_lists_every_branch():
    with pytest.raises(ShapeError) as info:
        Sequential([Concat([[Conv2D(2, 1)], [Conv2D(3, 3)], [MaxPool(3, 1, P=1)]])], input_shape=(8, 8, 2))
    message = str(info.value)
    assert "layer 1 (Concat)" in message
    assert "branch 1 gives 8x8x2, branch 2 gives 6x6x3, branch 3 gives 8x8x2" in message


def test_bad_containers_fail_at_construction():
    with pytest.raises(ValueError, match="at least one layer"):
        Residual([])
    with pytest.raises(ValueError, match="at least one branch"):
        Concat([])
    with pytest.raises(TypeError, match="Residual body layer 2"):
        Residual([ReLU(), "CONV3-8"])
    with pytest.raises(ShapeError, match="volume"):
        Sequential([FC(4), GlobalAvgPool()], input_shape=(4, 4, 1))


def test_backward_without_training_forward_is_explained():
    net = Sequential([_basic_block(2)], input_shape=(4, 4, 2))
    net.forward(np.zeros((2, 4, 4, 2), dtype=np.float32), train=False)
    with pytest.raises(RuntimeError, match=r"layer 1 \(Residual\) body 5 \(BatchNorm\).*train=True"):
        net.backward(np.zeros((2, 4, 4, 2), dtype=np.float32))
