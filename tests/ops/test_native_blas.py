"""One image split over Numba's threads (volnet.ops.native_blas, the direct kernel's row split, and the network
pass that turns them on): equal to the naive loops on random layers, float32 and float64, by rows and by
filters; BLAS held to one thread for such a pass and given back; a forked child and a thread-unsafe
threading layer run it in one piece."""

import multiprocessing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.layers import FC, Conv2D, MaxPool, ReLU
from volnet.layers.paths import forward_layers
from volnet.net import Sequential
from volnet.ops import conv, direct, jit, native_blas, threads, tiled
from volnet.ops.conv import conv_forward_naive
from strategies import conv_arrays, conv_layers

pytestmark = pytest.mark.skipif(not jit.ENABLED or native_blas.functions() is None,
                                reason="Numba off, or NumPy's BLAS functions not found")
SCHEDULER = threads.scheduler()


def one_blas_thread():
    """NumPy's BLAS on one thread, as in the network pass that calls these kernels."""
    return SCHEDULER._one_blas_thread()


def blas_threads() -> int:
    return min(lib.num_threads for lib in SCHEDULER.blas().lib_controllers)


def layers():
    """Any layer (:func:`strategies.conv_layers`), dilated too, outputs from 1x1 (split by filters) to 20x20
    (split by rows), 1-2 images, 1-3 threads."""
    return conv_layers(dilations=st.integers(1, 2), batches=st.integers(1, 2), widths=20, threads=st.integers(1, 3))


def _expected(setting):
    x, w, b = conv_arrays(setting)
    b = b if setting["bias"] else None
    out, cache = conv_forward_naive(x, w, np.zeros_like(w, shape=setting["K"]) if b is None else b, setting["S"],
                                    setting["pad"], setting["dilation"], fit="crop")
    return w, b, cache, np.maximum(out, 0) if setting["relu"] else out


def _tolerance(dtype):
    return 1e-4 if dtype == np.float32 else 1e-11


@settings(max_examples=60, deadline=None)
@given(setting=layers())
def test_correlate_equals_naive(setting):
    w, b, cache, expected = _expected(setting)
    with one_blas_thread():
        out = native_blas.correlate(cache.xp, cache.geometry, w.reshape(-1, setting["K"]), b, setting["relu"],
                                    setting["threads"])
    assert out.dtype == setting["dtype"]
    tol = _tolerance(setting["dtype"])
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(setting=layers())
def test_direct_forward_split_by_rows_equals_naive(setting):
    if setting["dilation"] > 1:
        setting = {**setting, "dilation": 1, "pad": min(setting["pad"], setting["F"] - 1)}
    w, b, cache, expected = _expected(setting)
    x = cache.xp[:1]
    out = direct.correlate(x, w, cache.geometry, b, setting["relu"], row_threads=setting["threads"])
    tol = _tolerance(setting["dtype"])
    np.testing.assert_allclose(out[0], expected[0], rtol=tol, atol=tol)


def test_direct_forward_runs_its_rows_on_numbas_threads_where_parts_are_big_enough(monkeypatch):
    compiled = []
    real = direct.forward_kernel
    monkeypatch.setattr(direct, "forward_kernel",
                        lambda *a, parallel: compiled.append(parallel) or real(*a, parallel=parallel))
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 32, 32, 16)), rng.standard_normal((3, 3, 16, 32))
    _, cache = conv_forward_naive(x, w, np.zeros(32), 1, 1)
    direct.correlate(cache.xp, w, cache.geometry, row_threads=2)  # 32*32*32*144: parts of 2.4 million
    direct.correlate(cache.xp, w, cache.geometry, row_threads=1)
    _, cache = conv_forward_naive(x[:, :2, :2, :1], w[:, :, :1], np.zeros(32), 1, 1)
    direct.correlate(cache.xp, w[:, :, :1], cache.geometry, row_threads=2)  # 2*2*32*9: too small to split
    assert compiled == [True, False, False]  # (the kernel compiled parallel, or the plain one)


@settings(max_examples=50, deadline=None)
@given(M=st.integers(1, 3), K=st.integers(1, 300), N=st.integers(1, 40), parts=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]), relu=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_multiply_equals_numpy(M, K, N, parts, dtype, relu, seed):
    rng = np.random.default_rng(seed)
    a, w, b = (rng.standard_normal(shape).astype(dtype) for shape in ((M, K), (K, N), (N,)))
    expected = a.astype(np.float64) @ w + b
    with one_blas_thread():
        out = native_blas.multiply(a, w, b, relu, parts)
    assert out.dtype == dtype and out.shape == (M, N)
    tol = _tolerance(dtype) * np.sqrt(K)
    np.testing.assert_allclose(out, np.maximum(expected, 0) if relu else expected, rtol=tol, atol=tol)


def test_numpys_blas_functions_are_found():
    addresses, wide = native_blas.functions()
    assert set(addresses) == set(native_blas.FUNCTIONS) and all(addresses.values())
    assert isinstance(wide, bool)


# -- the network pass ----------------------------------------------------------------------------------------


@pytest.fixture
def two_blas_threads():
    if not SCHEDULER.blas() or not SCHEDULER.blas().lib_controllers:
        pytest.skip("threadpoolctl, or a BLAS it can see, is missing")
    with SCHEDULER.blas().limit(limits=2):
        yield


def test_a_forward_pass_over_one_image_splits_it_with_blas_on_one_thread(two_blas_threads):
    if native_blas.split_threads(2) < 2:
        pytest.skip("Numba's threading layer is not thread-safe here")
    with SCHEDULER.network_pass(1, split_image=True) as workers:
        assert (workers.split_rows, workers.blas_held, workers.rows()) == (True, True, 2)
        assert blas_threads() == 1
    assert blas_threads() == 2
    with SCHEDULER.network_pass(1) as workers:  # a backward pass keeps BLAS's threads
        assert not workers.split_rows and not workers.blas_held and blas_threads() == 2
    with SCHEDULER.network_pass(2, split_image=True) as workers:  # two images split the batch
        assert not workers.split_rows and workers.blas_held


def _net():
    """Layers that take every split kernel at batch 1: a first CONV (direct), a dilated 3x3 CONV (im2col on
    Numba's threads, split by filters on its 6x6 outputs), and an FC of 2**18 multiply-adds or more (split
    inputs)."""
    return Sequential([Conv2D(16, 5, P=2), ReLU(), MaxPool(2), Conv2D(64, 3, P=2, dilation=2), FC(128), ReLU(),
                       FC(10)],
                      (12, 12, 3), dtype=np.float64, seed=1)


def test_a_net_at_batch_one_equals_its_unsplit_forward(two_blas_threads, monkeypatch):
    if native_blas.split_threads(2) < 2:
        pytest.skip("Numba's threading layer is not thread-safe here")
    monkeypatch.setattr(threads, "SPLIT_IMAGE_MULTIPLY_ADDS", 0)  # (a net this small is not split otherwise)
    net = _net()
    x = np.random.default_rng(2).standard_normal((1, 12, 12, 3))
    expected = forward_layers(net.layers, x, False, threads.SERIAL)
    calls = []
    for name in ("correlate", "multiply"):
        real = getattr(native_blas, name)
        monkeypatch.setattr(native_blas, name, lambda *a, real=real, name=name: calls.append(name) or real(*a))
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12, atol=1e-12)
    assert calls == ["correlate", "multiply"]


def _forward_in_child(queue):
    threads.SPLIT_IMAGE_MULTIPLY_ADDS = 0
    net = _net()
    x = np.random.default_rng(2).standard_normal((1, 12, 12, 3))
    queue.put((tiled.parallel_threads(2), net.forward(x)))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_a_child_forked_after_the_split_ran_runs_it_in_one_piece(two_blas_threads, monkeypatch):
    """GNU OpenMP must not be used again in a child forked after the parent used it (it would hang or stop)."""
    if native_blas.split_threads(2) < 2:
        pytest.skip("Numba's threading layer is not thread-safe here")
    monkeypatch.setattr(threads, "SPLIT_IMAGE_MULTIPLY_ADDS", 0)
    net = _net()
    x = np.random.default_rng(2).standard_normal((1, 12, 12, 3))
    expected = net.forward(x)  # the parent splits
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forward_in_child, args=(queue,))
    child.start()
    child.join(timeout=120)  # (what the child puts in the queue is small enough to leave before it is read)
    assert child.exitcode == 0
    threads_in_child, out = queue.get(timeout=10)
    assert threads_in_child == 1
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_only_a_net_of_enough_work_an_image_splits_one_image(monkeypatch):
    """Below SPLIT_IMAGE_MULTIPLY_ADDS an image the split costs more than it gains: the pass runs unsplit."""
    seen = []
    real = SCHEDULER.network_pass
    monkeypatch.setattr(SCHEDULER, "network_pass", lambda images, split_image=False: seen.append(split_image)
                        or real(images, split_image))
    net = _net()
    multiply_adds = net._multiply_adds_per_image()
    assert multiply_adds == 12 * 12 * 16 * 25 * 3 + 6 * 6 * 64 * 9 * 16 + 6 * 6 * 64 * 128 + 128 * 10
    x = np.random.default_rng(2).standard_normal((1, 12, 12, 3))
    for threshold in (multiply_adds + 1, multiply_adds):
        monkeypatch.setattr(threads, "SPLIT_IMAGE_MULTIPLY_ADDS", threshold)
        net.forward(x)
    net.forward(np.concatenate([x, x]))  # two images: nothing to decide
    assert seen == [False, True, False]


def test_a_threading_layer_that_is_not_thread_safe_runs_it_in_one_piece(monkeypatch):
    monkeypatch.setattr(tiled, "_threading_layer", lambda: "workqueue")
    assert tiled.parallel_threads(2) == 1 and native_blas.split_threads(2) == 1
    monkeypatch.setattr(native_blas, "functions", lambda: None)
    monkeypatch.setattr(tiled, "_threading_layer", lambda: "omp")
    assert native_blas.split_threads(2) == 1  # no BLAS to call from Numba's threads
    with SCHEDULER.network_pass(1, split_image=True) as workers:
        assert not workers.split_rows


def test_the_kernels_close_over_nothing_so_numbas_disk_cache_keeps_them():
    """Kernels defined inside a function, closing over their helpers, were compiled again in every process."""
    from volnet.ops import native_blas_kernels as kernels

    for kernel in (kernels.correlate_kernel, kernels.multiply_kernel, kernels.copy_fields, kernels.multiply_rows):
        assert kernel.py_func.__closure__ is None
        assert type(kernel._cache).__name__ == "FunctionCache"  # (cache=True; without it, a NullCache)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_then_batchnorm_in_inference_runs_fused_and_equals_the_layers_one_by_one(batch, dtype, monkeypatch):
    """CONV -> BatchNorm (-> RELU) in inference: the BatchNorm's map applied in the CONV's output pass (the
    direct forward's and im2col's at batch 1, on every other plan after it), equal to the layers run apart."""
    from volnet.layers import BatchNorm, Residual

    monkeypatch.setattr(threads, "SPLIT_IMAGE_MULTIPLY_ADDS", 0)
    rng = np.random.default_rng(7)
    layers = [Conv2D(16, 5, P=2), BatchNorm(), ReLU(),                                # direct (a first layer)
              Residual([Conv2D(32, 3, P=2, dilation=2), BatchNorm(), ReLU(),          # im2col
                        Conv2D(32, 3, P=1), BatchNorm()],                             # Winograd at batch 3
                       shortcut=[Conv2D(32, 1), BatchNorm()]),
              ReLU(), MaxPool(2), FC(10)]
    net = Sequential(layers, (12, 12, 3), dtype=dtype, seed=3)
    for layer in (nested for top in net.layers for _, nested in top.named_layers()):
        if isinstance(layer, BatchNorm):  # statistics other than the initial zeros and ones
            layer.running_mean[...] = rng.standard_normal(layer.running_mean.shape)
            layer.running_var[...] = rng.uniform(0.5, 2.0, layer.running_var.shape)
            layer.gamma[...] = rng.standard_normal(layer.gamma.shape)
            layer.beta[...] = rng.standard_normal(layer.beta.shape)
    x = rng.standard_normal((batch, 12, 12, 3)).astype(dtype)
    apart = x
    for layer in net.layers:  # each layer alone: nothing fused
        apart = layer.forward(apart, False, workers=threads.SERIAL) if not hasattr(layer, "body") else (
            _apart(layer.body, apart) + _apart(layer.shortcut, apart))
    affine_calls = []
    real = conv.forward_step  # (a CONV's step in the network's inference plan, or conv_forward's)
    monkeypatch.setattr(conv, "forward_step", lambda *a: affine_calls.append(a[11]) or real(*a))
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(net.forward(x), apart, rtol=tol, atol=tol)
    assert affine_calls == [True] * 4  # every CONV followed by a BatchNorm took its map
    affine_calls.clear()  # caches kept (saliency, Grad-CAM): the layers run apart
    np.testing.assert_allclose(forward_layers(net.layers, x, False, keep=True), apart, rtol=tol, atol=tol)
    assert affine_calls == [False] * 4


def _apart(layers, x):
    for layer in layers:
        x = layer.forward(x, False, workers=threads.SERIAL)
    return x
