"""A network's inference plan (volnet.layers.inference): the same numbers as the layers run one by one, the
parameters read at every call, caches dropped, and a new plan for each batch shape."""

import threading

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from volnet import Sequential, ShapeError, zoo
from volnet.layers import (FC, AvgPool, BatchNorm, Concat, Conv2D, Dropout, GlobalAvgPool, Inception, L2Pool,
                           LocallyConnected, MaxPool, ReLU, Residual)
from volnet.layers.paths import forward_layers
from volnet.ops import pool_kernels, threads
from volnet.ops.conv_plan import plan_conv
from volnet.ops.window import geometry


def _layer_by_layer(net, x):
    """The forward pass as forward_layers runs it (fusions included), without the inference plan."""
    split_image = len(x) == 1 and net._multiply_adds_per_image() >= threads.SPLIT_IMAGE_MULTIPLY_ADDS
    with threads.scheduler().network_pass(len(x), split_image) as workers:
        return forward_layers(net.layers, x.astype(net.dtype), False, workers)


def _with_statistics(net, rng):
    """BatchNorm running statistics other than the initial zeros and ones."""
    for layer in (nested for top in net.layers for _, nested in top.named_layers()):
        if isinstance(layer, BatchNorm):
            layer.running_mean[...] = rng.standard_normal(layer.running_mean.shape)
            layer.running_var[...] = rng.uniform(0.5, 2.0, layer.running_var.shape)
    return net


NETS = {
    "lenet": lambda: zoo.lenet(),
    "every kind": lambda: Sequential(
        [Conv2D(8, 5, P=2), BatchNorm(), ReLU(), MaxPool(2), Conv2D(12, 3, S=2, P=1, fit="crop"), ReLU(),
         Residual([Conv2D(12, 3, P=1, bias=False), BatchNorm(), ReLU(), Conv2D(12, 3, P=1)]), ReLU(),
         AvgPool(3, 1, P=1), L2Pool(2), LocallyConnected(4, 1), Dropout(0.5), FC(16), ReLU(), FC(5)],
        (16, 16, 3), seed=2),
    "float64, global pool": lambda: Sequential([Conv2D(6, 3, P=1), ReLU(), MaxPool(3, 2, P=1), GlobalAvgPool(), FC(3)],
                                               (9, 9, 2), seed=4, dtype=np.float64),
    "inception, nested residual": lambda: Sequential(
        [Conv2D(8, 3, P=1), ReLU(), Inception(2, 2, 3, 1, 2, 2),
         Residual([Concat([[Conv2D(4, 1)], [Residual([Conv2D(9, 3, P=1), BatchNorm()]), Conv2D(4, 1)]]),
                   Conv2D(9, 1)]),
         GlobalAvgPool(), FC(3)], (7, 7, 3), seed=5),
}


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("batch", [1, 3])
def test_the_plan_gives_the_layers_numbers_exactly(name, batch):
    rng = np.random.default_rng(batch)
    net = _with_statistics(NETS[name](), rng)
    x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
    expected = _layer_by_layer(net, x)
    np.testing.assert_array_equal(net.forward(x), expected)
    np.testing.assert_array_equal(net.forward(x), expected)  # the remembered plan, again


@settings(max_examples=30, deadline=None)
@given(F=st.integers(1, 5), S=st.integers(1, 3), K=st.integers(1, 40), depth=st.integers(1, 20),
       size=st.integers(5, 14), batch=st.integers(1, 3), pool=st.sampled_from([MaxPool, AvgPool]),
       window=st.integers(2, 3), relu=st.booleans(), seed=st.integers(0, 99))
def test_random_conv_pool_fc_nets_match_the_layers(F, S, K, depth, size, batch, pool, window, relu, seed):
    """Random CONV (tile tails: any K; any stride, cropped) -> (ReLU ->) POOL -> FC nets: the plan's steps give
    the layers' numbers, a max pool fused into the CONV's step or not (windows that tile its output or not)."""
    middle = [ReLU()] if relu else []
    try:
        net = Sequential([Conv2D(K, F, S=S, P=F // 2, fit="crop"), *middle, pool(window, fit="crop"), FC(7)],
                         (size, size, depth), seed=seed)
    except ShapeError:  # a window larger than the CONV's output
        assume(False)
    x = np.random.default_rng(seed).standard_normal((batch, size, size, depth)).astype(np.float32)
    np.testing.assert_array_equal(net.forward(x), _layer_by_layer(net, x))


@pytest.mark.parametrize("batch", [1, 4])
def test_a_max_pool_after_a_compiled_conv_runs_in_the_conv_step(batch, monkeypatch):
    """LeNet's CONV -> RELU -> POOL pairs: where the CONV takes the direct kernel or the compiled Winograd, the
    pool runs in its output pass (no pooling kernel called); the numbers, NaN included, are the layers'."""
    net = zoo.lenet()
    x = np.random.default_rng(batch).standard_normal((batch, 28, 28, 1)).astype(np.float32)
    x[0, 9, 13, 0] = np.nan
    calls = []
    real = pool_kernels.max_pool_values
    monkeypatch.setattr(pool_kernels, "max_pool_values", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    out = net.forward(x)
    pooling_convs = sum(plan_conv(geometry((batch, *layer.input_shape), layer.F, 1, layer.P), layer.K, np.float32,
                                  threads.cores(), True, batch == 1).forward in ("direct", "winograd_fused")
                        for layer in net.layers if isinstance(layer, Conv2D))
    assert len(calls) == 2 - pooling_convs
    calls.clear()
    np.testing.assert_array_equal(out, _layer_by_layer(net, x))
    assert len(calls) == 2 and np.isnan(out[0]).all() and not np.isnan(out[1:]).any()


def test_training_between_two_passes_is_seen():
    """The steps read the parameters at each call: changed in place (an optimizer's step), or replaced."""
    net = zoo.lenet()
    x = np.random.default_rng(0).standard_normal((1, 28, 28, 1)).astype(np.float32)
    before = net.forward(x)
    net.layers[0].weight[...] *= 2.0  # in place
    net.layers[3].bias[...] += 1.0
    changed = net.forward(x)
    assert not np.allclose(changed, before)
    np.testing.assert_array_equal(changed, _layer_by_layer(net, x))
    for layer in (net.layers[0], net.layers[6]):  # replaced by new arrays of the same shape
        param = layer._params[0]
        param.value = np.ascontiguousarray(param.value[..., ::-1])
    np.testing.assert_array_equal(net.forward(x), _layer_by_layer(net, x))


@pytest.mark.parametrize("index, shape, error", [
    (3, (5, 5, 8, 32), "input depth D=16 does not match the filters' depth 8"),  # 8 deep where the input is 16
    (6, (1000, 128), r"each input holds 1568 values \(shape \(7, 7, 32\)\) but the weights expect 1000"),
])
def test_weights_replaced_by_another_shape_get_the_layers_error(index, shape, error):
    net = zoo.lenet()
    x = np.zeros((1, 28, 28, 1), np.float32)
    net.forward(x)
    net.layers[index]._params[0].value = np.zeros(shape, np.float32)
    with pytest.raises(ShapeError, match=error):
        net.forward(x)


@pytest.mark.parametrize("name", ["lenet", "inception, nested residual"])
def test_a_new_batch_shape_gets_its_own_plan_and_caches_are_dropped(name):
    net = NETS[name]()
    rng = np.random.default_rng(1)
    for batch in (1, 4, 1, 2):
        x = rng.standard_normal((batch, *net.input_shape)).astype(np.float32)
        net.forward(x, train=True)  # every layer keeps a cache
        assert net.forward(x).shape == (batch, net.output_shape[-1])
        assert all(layer._cache is None for top in net.layers for _, layer in top.named_layers())  # nested too
        np.testing.assert_array_equal(net.forward(x), _layer_by_layer(net, x))


def test_threads_sharing_a_network_get_their_own_numbers():
    """Passes of different batch shapes on two threads at once: each its own plan, whichever was remembered."""
    net = zoo.lenet()
    rng = np.random.default_rng(2)
    inputs = {n: rng.standard_normal((n, 28, 28, 1)).astype(np.float32) for n in (1, 5)}
    expected = {n: _layer_by_layer(net, x) for n, x in inputs.items()}
    failures = []

    def run(n):  # (close, not equal: the thread that finds the cores held runs its kernels unsplit)
        for _ in range(30):
            if not np.allclose(net.forward(inputs[n]), expected[n], rtol=1e-5, atol=1e-6):
                failures.append(n)

    workers = [threading.Thread(target=run, args=(n,)) for n in inputs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []


def test_a_network_pickles_after_a_pass_and_its_copy_gives_the_same_numbers():
    """The remembered steps (functions of this process) are left out of a pickle; the copy works them out again."""
    import copy
    import pickle

    net = zoo.lenet()
    x = np.random.default_rng(3).standard_normal((2, 28, 28, 1)).astype(np.float32)
    expected = net.forward(x)
    for twin in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        np.testing.assert_array_equal(twin.forward(x), expected)
        twin.layers[0].weight[...] *= 2.0  # the copy's steps run the copy's layers, not the original's
        np.testing.assert_array_equal(twin.forward(x), _layer_by_layer(twin, x))
        assert not np.allclose(twin.forward(x), expected)
    np.testing.assert_array_equal(net.forward(x), expected)


def test_a_subclass_with_a_forward_of_its_own_runs_it():
    """A user's CONV that changes its forward is not replaced by the plan's prepared CONV step."""

    class DoubledConv(Conv2D):
        def forward(self, x, train=False, **kwargs):
            return 2.0 * super().forward(x, train, **kwargs)

    rng = np.random.default_rng(4)
    plain = Sequential([Conv2D(4, 3, P=1), FC(3)], (6, 6, 2), seed=1)
    doubled = Sequential([DoubledConv(4, 3, P=1), FC(3)], (6, 6, 2), seed=1)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(doubled.forward(x) - doubled.layers[1].bias,
                               2.0 * (plain.forward(x) - plain.layers[1].bias), rtol=1e-5, atol=1e-5)
