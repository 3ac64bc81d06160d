"""The register-blocked direct convolution: equal to the naive loops on random layers (tile tails included),
float32 and float64, equal to PyTorch, split over threads, compiled under the vectoriser flags it needs
and with Numba's own flags restored afterwards."""

import contextlib
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from volnet.ops import aligned, direct, direct_weights, pool_forward, tiled
from volnet.ops.conv import conv_forward_naive
from volnet.ops.window import geometry, pad_spatial
from strategies import conv_arrays, conv_layers

pytestmark = pytest.mark.skipif(not direct.ENABLED, reason="Numba not installed, or VOLNET_NUMBA=0")


@settings(max_examples=60, deadline=None)
@given(setting=conv_layers())
def test_correlate_equals_naive(setting):
    x, w, b = conv_arrays(setting)
    expected, cache = conv_forward_naive(x, w, b if setting["bias"] else np.zeros_like(b), setting["S"],
                                         setting["pad"], fit="crop")
    g = cache.geometry
    out = direct.correlate(cache.xp, w, g, b if setting["bias"] else None, setting["relu"], setting["threads"])
    assert out.dtype == setting["dtype"] and out.shape == expected.shape
    tol = 1e-4 if setting["dtype"] == np.float32 else 1e-11
    np.testing.assert_allclose(out, np.maximum(expected, 0) if setting["relu"] else expected, rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(setting=conv_layers(), pool=st.integers(2, 3), nans=st.booleans(), row_threads=st.integers(1, 2))
def test_pooled_output_equals_the_max_pool_of_the_output(setting, pool, nans, row_threads):
    """The output max pooled in the kernel's output pass (an inference step's CONV -> RELU -> POOL) is exactly
    the pooling kernels' max pool of the plain output: any tile tails, window 2 or 3, ReLU or not, NaN
    inputs (NaN wins and stays, as in the pooling kernels), the batch split over threads or one image's rows
    over Numba's."""
    x, w, b = conv_arrays(setting)
    if nans:  # windows whose first value is NaN, and windows where a later one is
        x[0, 0, 0, 0] = x[-1, x.shape[1] // 2, x.shape[2] // 2, -1] = np.nan
    g = geometry(x.shape, setting["F"], setting["S"], setting["pad"], fit="crop")
    assume(min(g.out_hw) >= pool)
    Ho, Wo = (size - size % pool for size in g.out_hw)  # the rows and columns the windows tile
    g = dataclasses.replace(g, out_hw=(Ho, Wo))
    xp, dtype, relu = pad_spatial(x, g.pads), setting["dtype"], setting["relu"]
    rows = row_threads if len(x) == 1 else 1
    workers = 1 if rows > 1 else setting["threads"]
    plain = direct.correlator(g, setting["K"], dtype, relu, workers, row_threads=rows)(xp, w, b, None)
    expected, _ = pool_forward(plain, pool, pool, "max")
    pooled = direct.correlator(g, setting["K"], dtype, relu, workers, row_threads=rows, pool=pool)(xp, w, b, None)
    assert pooled.shape == expected.shape == (len(x), Ho // pool, Wo // pool, setting["K"])
    np.testing.assert_array_equal(pooled, expected)
    assert np.isnan(pooled).any() == np.isnan(plain).any()


def test_a_pool_that_does_not_tile_the_output_is_refused():
    g = geometry((1, 7, 8, 3), 3, 1, 1)
    assert direct.can_pool(g, 1) and not direct.can_pool(g, 2)
    with pytest.raises(ValueError, match="a 2x2 pool does not tile a 7x8 output"):
        direct.correlator(g, 4, np.float32, pool=2)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(setting=conv_layers())
def test_weight_gradient_equals_naive(setting):
    from volnet.ops.conv import conv_backward_naive

    x, w, b = conv_arrays(setting)
    out, cache = conv_forward_naive(x, w, b, setting["S"], setting["pad"], fit="crop")
    dout = np.random.default_rng(setting["seed"] + 1).standard_normal(out.shape).astype(setting["dtype"])
    _, dw_naive, db_naive = conv_backward_naive(dout, cache)
    dw, db = direct_weights.weight_gradient(cache.xp, dout, cache.geometry, setting["threads"])
    assert dw.dtype == db.dtype == setting["dtype"]
    tol = 1e-3 if setting["dtype"] == np.float32 else 1e-10
    np.testing.assert_allclose(dw, dw_naive, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, db_naive, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tile_tails_in_both_directions(dtype):
    """Output widths and filter counts one past a whole tile and one short of it, a layer of each."""
    _, width = direct.tile(40, dtype)
    for W_out, K in ((9, width + 1), (13, 2 * width - 1), (23, width - 1)):  # 23: a tile of 8 on AVX-512
        assert W_out % direct.tile(K, dtype, W_out)[0] and K % width
        setting = dict(x_shape=(2, 4, W_out + 2, 3), F=3, S=1, pad=0, K=K, dtype=dtype, seed=W_out)
        x, w, b = conv_arrays(setting)
        expected, cache = conv_forward_naive(x, w, b)
        np.testing.assert_allclose(direct.correlate(cache.xp, w, cache.geometry, b), expected, rtol=1e-5,
                                   atol=1e-4 if dtype == np.float32 else 1e-11)


def test_equals_torch(torch, nchw):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 15, 13, 16)).astype(np.float32)
    w = rng.standard_normal((5, 5, 16, 37)).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32)
    g = geometry(x.shape, 5, 2, 2)
    out = direct.correlate(pad_spatial(x, g.pads), w, g, b)
    theirs = torch.nn.functional.conv2d(nchw.to_torch(x), nchw.filters_to_torch(w), torch.tensor(b), stride=2,
                                        padding=2)
    np.testing.assert_allclose(out, nchw.from_torch(theirs), rtol=1e-4, atol=1e-4)


def test_keeps_nan():
    """A diverging network shows NaN, not the ReLU's floor nor -inf."""
    x = np.ones((1, 3, 3, 8), dtype=np.float32)
    x[0, 1, 1, 2] = np.nan
    w = np.ones((3, 3, 8, 4), dtype=np.float32)
    g = geometry(x.shape, 3, 1, 0)
    for relu in (False, True):
        assert np.isnan(direct.correlate(x, w, g, None, relu)).all()


@pytest.fixture
def compiles_seen(monkeypatch):
    """The vectoriser flags (SLP, loop) in effect at each compile from now on, from fresh dispatchers, with
    Numba's defaults (the reverse of the kernels' flags) outside them."""
    from numba.core import config

    monkeypatch.setattr(config, "SLP_VECTORIZE", 0)
    monkeypatch.setattr(config, "LOOP_VECTORIZE", 1)
    seen = []
    real = tiled.compile_flags

    @contextlib.contextmanager
    def recording(loop_vectorize=False):
        with real(loop_vectorize):
            seen.append((config.SLP_VECTORIZE, config.LOOP_VECTORIZE))
            yield

    monkeypatch.setattr(tiled, "compile_flags", recording)
    monkeypatch.setattr(tiled, "KERNELS", {})  # fresh dispatchers: their first calls compile (or load)
    yield seen
    assert (config.SLP_VECTORIZE, config.LOOP_VECTORIZE) == (0, 1)


@pytest.mark.slow
def test_compile_flags_set_for_the_compile_and_restored_after(compiles_seen):
    x = np.ones((1, 4, 4, 2), dtype=np.float32)
    w = np.ones((2, 2, 2, 3), dtype=np.float32)
    np.testing.assert_array_equal(direct.correlate(x, w, geometry(x.shape, 2, 1, 0)), 8)
    assert compiles_seen and all(flags == (1, 0) for flags in compiles_seen)


@pytest.mark.slow
def test_new_argument_types_compile_under_the_flags_too(compiles_seen):
    """A call whose arrays differ in layout from the first call's compiles another overload: under the
    flags as well (outside them the kernel ran 25x slower, and Numba's disk cache kept that code)."""
    rng = np.random.default_rng(0)
    PW, KB = direct.tile(8, np.float32)
    kernel = tiled.kernel(direct._forward_source, PW, KB)
    wide = rng.standard_normal((2, 6, 2 * 6 * 3)).astype(np.float32)
    strided, contiguous = wide[:, :, ::2], np.ascontiguousarray(wide[:, :, ::2])
    w = np.zeros((3, 3 * 3, KB), dtype=np.float32)
    w[..., :8] = rng.standard_normal((3, 9, 8))
    results, compiles = [], []
    for rows in (strided, contiguous):
        out = np.empty((2, 4, 4, 8), dtype=np.float32)
        kernel(rows, w, np.zeros(KB, np.float32), np.float32(-np.inf), 1, 3, out, 0, 2,
               (4, 4, 0, 0, 0, 1, 0, 1, 0, 6, 1))
        results.append(out)
        compiles.append(len(compiles_seen))
    assert len(kernel.dispatcher.signatures) == 2
    assert compiles[0] >= 1 and compiles[1] == compiles[0] + 1  # the second overload's compile, too
    assert all(flags == (1, 0) for flags in compiles_seen)
    np.testing.assert_array_equal(results[0], results[1])
    expected = np.einsum("nhwuvd,uvdk->nhwk", np.lib.stride_tricks.sliding_window_view(
        contiguous.reshape(2, 6, 6, 3), (3, 3), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3), w.reshape(3, 3, 3, KB))
    np.testing.assert_allclose(results[1], expected[..., :8], rtol=1e-5, atol=1e-5)


def test_compile_flags_restored_on_error():
    from numba.core import config

    before = config.SLP_VECTORIZE, config.LOOP_VECTORIZE
    with pytest.raises(RuntimeError):
        with tiled.compile_flags():
            raise RuntimeError("compile failed")
    assert (config.SLP_VECTORIZE, config.LOOP_VECTORIZE) == before


@pytest.mark.parametrize("F", [1, 3])
def test_an_input_that_fit_crop_cropped_is_read_in_place(F):
    """A strided layer whose stride does not fit (fit='crop') hands the kernel a view with its last rows and
    columns cut off: the kernel reads it where it lies (no contiguous copy) and gives the naive result."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 10, 10, 8)).astype(np.float32)
    w, b = rng.standard_normal((F, F, 8, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    expected, cache = conv_forward_naive(x, w, b, 2, 0, fit="crop")
    assert not cache.xp.flags.c_contiguous  # a view of x: the crop made no copy
    np.testing.assert_allclose(direct.correlate(cache.xp, w, cache.geometry, b), expected, rtol=1e-5, atol=1e-5)
    calls = []
    real = np.ascontiguousarray
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np, "ascontiguousarray", lambda a, *args, **kw: calls.append(a.shape) or real(a, *args, **kw))
        direct.correlate(cache.xp, w, cache.geometry, b)
    assert cache.xp.shape not in calls


def test_instruction_set_is_the_one_numba_compiles_for(monkeypatch):
    """The tiles follow NUMBA_CPU_FEATURES where set (NUMBA_CPU_NAME=generic empties it: baseline code), else
    the host's features."""
    import llvmlite.binding as llvm
    from numba.core import config

    host = llvm.get_host_cpu_features()
    expected_host = "avx512" if host.get("avx512f") else "avx2" if host.get("avx2") and host.get("fma") else "portable"
    for features, expected in [(None, expected_host), ("", "portable"), ("+sse2,+avx2,+fma,-avx512f", "avx2"),
                               ("+avx2,-fma", "portable"), ("+avx2,+fma,+avx512f,+avx512bw", "avx512")]:
        monkeypatch.setattr(config, "CPU_FEATURES", features)
        tiled.isa.cache_clear()
        try:
            assert tiled.isa() == expected, features
        finally:
            tiled.isa.cache_clear()


def test_tile_per_instruction_set(monkeypatch):
    assert direct.isa() in direct.TILES
    for isa, (counts, width) in direct.TILES.items():
        monkeypatch.setattr(direct, "isa", lambda isa=isa: isa)
        pixels = counts[0]
        assert direct.tile(64, np.float32) == (pixels, width)
        assert direct.tile(64, np.float64) == (pixels, width // 2)
        # at most half the filters: a tile half as wide, of the pixel counts measured for it
        assert direct.tile(width // 2, np.float32) == (direct.HALF_TILES[isa][0], width // 2)
        assert direct.tile(width // 4, np.float64) == (direct.HALF_TILES[isa][0], width // 4)
        # the pixel count whose tiles cover a row with the fewest to spare; the first where they tie
        for out_width in (1, 7, 14, 16, 28, 32, 55, 112):
            covered = {p: -(-out_width // p) * p for p in counts}
            chosen = direct.tile(64, np.float32, out_width)[0]
            assert chosen == next(p for p in counts if covered[p] == min(covered.values()))
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    assert [direct.tile(32, np.float32, w)[0] for w in (14, 28, 32, 16, 8, 4)] == [7, 7, 8, 8, 8, 7]


@pytest.mark.parametrize("F, S, D, K, size, expected, expected_dw, on_avx2", [
    (5, 1, 16, 32, 40, True, True, True),  # LeNet's second CONV
    (5, 1, 32, 16, 40, True, True, True),  # its input gradient (flipped filters)
    (3, 2, 64, 128, 40, True, False, False),  # ResNet's strided 3x3: the direct forward, im2col's dw (a tie)
    (3, 2, 128, 256, 16, True, False, False),  # out 8x8: a whole tile a row
    (3, 2, 128, 256, 8, False, False, False),  # out 4x4: half of each tile wasted
    (3, 2, 256, 512, 16, False, False, False),  # too many filters
    (5, 2, 16, 32, 40, False, False, False),  # strided 5x5: not measured
    (3, 1, 32, 32, 40, False, False, False),  # 3x3 stride 1: Winograd or im2col
    (5, 1, 64, 192, 40, False, False, False),  # too many filters
    (7, 1, 8, 64, 40, True, True, True),
    (5, 1, 3, 64, 40, True, True, True),  # a first layer; its dout, 40x40x64 an image, stays in cache for dw
    (5, 1, 1, 16, 40, True, True, True),  # LeNet's first: one channel
    (7, 2, 3, 64, 224, True, False, True),  # the ImageNet stem: 112x112x64 of dout an image, dw by im2col
    (11, 4, 3, 96, 56, True, True, True),  # AlexNet's first layer: 96 filters
    (11, 4, 3, 128, 56, False, False, False),  # more filters than measured
    (7, 2, 3, 96, 112, True, True, True),  # 56x56x96 of dout an image (1.2 MB): direct dw too
    (1, 2, 64, 128, 40, True, False, False),  # 1x1 (pointwise): the direct forward, im2col's dw
    (1, 1, 192, 64, 32, True, False, False),
    (1, 1, 64, 128, 32, True, False, False),  # pointwise, twice the channels
    (1, 1, 64, 192, 32, False, False, False),  # pointwise, widening three times: im2col's GEMM (not split by rows)
    (1, 2, 64, 192, 32, True, False, False),  # strided: im2col would copy every other pixel first
    (1, 1, 256, 1024, 16, False, False, False),  # pointwise, too many filters
    (1, 1, 512, 128, 4, False, False, False),  # pointwise, out 4x4
])
def test_applies_where_measured_faster(monkeypatch, F, S, D, K, size, expected, expected_dw, on_avx2):
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    g = geometry((8, size, size, D), F, S, F // 2, fit="crop")
    assert direct.applies(g, D, K, np.float32) is expected
    assert direct_weights.applies_to_weight_gradient(g, D, K, np.float32) is expected_dw
    assert not direct.applies(g, D, K, np.int32)
    monkeypatch.setattr(direct, "isa", lambda: "avx2")  # first layers and LeNet's; not the strided nor the 1x1
    assert direct.applies(g, D, K, np.float32) is on_avx2
    assert direct_weights.applies_to_weight_gradient(g, D, K, np.float32) is expected_dw
    monkeypatch.setattr(direct, "isa", lambda: "portable")  # none measured
    assert not direct.applies(g, D, K, np.float32)


def test_a_widening_pointwise_layer_split_by_rows_takes_the_direct_forward(monkeypatch):
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    g = geometry((1, 32, 32, 64), 1, 1, 0)
    assert not direct.applies(g, 64, 192, np.float32)  # one image on one core: im2col
    assert direct.applies(g, 64, 192, np.float32, split_rows=True)


# -- through volnet.ops.conv's plan ----------------------------------------------------------------------


def _direct_everywhere(monkeypatch):
    """Every undilated float layer plans the direct forward (and so the flipped input gradient's too), and
    every stride-1 one the direct dw."""
    from volnet.ops import winograd_fused

    monkeypatch.setattr(winograd_fused, "applies", lambda g, depth, filters, dtype: False)
    monkeypatch.setattr(direct, "applies", lambda g, depth, filters, dtype, split_rows=False: g.dilation == (1, 1))
    monkeypatch.setattr(direct_weights, "applies_to_weight_gradient",
                        lambda g, depth, filters, dtype: g.dilation == (1, 1) and g.stride == (1, 1))


@pytest.fixture
def direct_everywhere(monkeypatch):
    _direct_everywhere(monkeypatch)


@settings(max_examples=30, deadline=None)
@given(setting=conv_layers())
def test_conv_forward_and_backward_through_the_plan_equal_naive(setting):
    from volnet.ops.conv import conv_backward, conv_backward_naive, conv_forward

    x, w, b = conv_arrays(setting)
    hyper = dict(stride=setting["S"], pad=setting["pad"], fit="crop")
    expected, naive_cache = conv_forward_naive(x, w, b, **hyper)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _direct_everywhere(monkeypatch)
        out, cache = conv_forward(x, w, b, **hyper)
        dout = np.random.default_rng(setting["seed"] + 1).standard_normal(out.shape).astype(setting["dtype"])
        grads = conv_backward(dout, cache)
    tol = 1e-4 if setting["dtype"] == np.float32 else 1e-10
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    for mine, theirs in zip(grads, conv_backward_naive(dout, naive_cache)):
        np.testing.assert_allclose(mine, theirs, rtol=tol, atol=tol * 10)


def test_the_kernels_run_what_the_plan_says(direct_everywhere, monkeypatch):
    from volnet.ops import conv, conv_plan

    calls = []
    real = direct.correlator
    monkeypatch.setattr(direct, "correlator", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 16))
    w = np.random.default_rng(1).standard_normal((5, 5, 16, 8))
    _, cache = conv.conv_forward(x, w, np.zeros(8), pad=2)
    plan = conv_plan.plan_conv(cache.geometry, 8, np.float64)
    assert (plan.forward, plan.input_gradient) == ("direct", "flipped")
    conv.conv_backward(np.ones((2, 8, 8, 8)), cache)
    assert calls == [cache.geometry, conv.flipped_geometry(cache.geometry, 8)]


def test_lenet_plan_on_avx512(monkeypatch):
    """LeNet's second CONV takes the compiled Winograd forward (and its input gradient's correlation) and the
    direct dw on AVX-512, colour first layers the direct forward and dw, LeNet's first the direct forward, dw
    and dx, narrow 3x3 layers the direct forward; the others keep their kernels."""
    from volnet.ops.conv import flipped_geometry
    from volnet.ops.conv_plan import ConvPlan, plan_conv

    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    lenet2 = geometry((64, 14, 14, 16), 5, 1, 2)
    assert plan_conv(lenet2, 32, np.float32) == ConvPlan("winograd_fused", "direct", "flipped")
    assert plan_conv(flipped_geometry(lenet2, 32), 16, np.float32).forward == "winograd_fused"
    assert plan_conv(geometry((64, 14, 14, 8), 5, 1, 2), 16, np.float32).forward == "direct"  # half a block deep
    strided = geometry((32, 32, 32, 64), 3, 2, 1, fit="crop")
    assert plan_conv(strided, 128, np.float32) == ConvPlan("direct", "im2col", "phases")
    assert plan_conv(geometry((4, 32, 32, 64), 3, 2, 1, fit="crop"), 128, np.float32).forward == "im2col"  # batch
    assert plan_conv(geometry((64, 32, 32, 3), 5, 1, 2), 64, np.float32) == ConvPlan("direct", "direct", "direct")
    assert plan_conv(geometry((64, 28, 28, 1), 5, 1, 2), 16, np.float32) == ConvPlan("direct", "direct", "direct")
    narrow = geometry((64, 32, 32, 32), 3, 1, 1)  # direct before Winograd up to 32 x 32, float32, rows >= 8
    assert plan_conv(narrow, 32, np.float32) == ConvPlan("direct", "winograd", "flipped")
    assert plan_conv(narrow, 64, np.float32).forward == "winograd"
    assert plan_conv(narrow, 32, np.float64).forward == "winograd"
    assert plan_conv(geometry((64, 4, 4, 32), 3, 1, 1), 32, np.float32).forward == "winograd"
    monkeypatch.setattr(direct, "ENABLED", False)
    assert plan_conv(lenet2, 32, np.float32) == ConvPlan("winograd_5x5", "winograd_5x5", "flipped")


def test_weight_gradient_checks_numerically(direct_everywhere, check_grad):
    """float64 numerical gradients of a LeNet-like layer whose forward, dw and dx all run direct kernels."""
    from volnet.ops import conv, conv_plan

    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 7, 6, 9)), rng.standard_normal((3, 3, 9, 5)), rng.standard_normal(5)
    _, cache = conv.conv_forward(x, w, b, pad=1)
    plan = conv_plan.plan_conv(cache.geometry, 5, np.float64)
    assert (plan.forward, plan.weight_gradient) == ("direct", "direct")
    dout = rng.standard_normal((2, 7, 6, 5))
    dx, dw, db = conv.conv_backward(dout, cache)
    check_grad(lambda: np.sum(conv.conv_forward(x, w, b, pad=1)[0] * dout), w, dw)
    check_grad(lambda: np.sum(conv.conv_forward(x, w, b, pad=1)[0] * dout), x, dx)
    check_grad(lambda: np.sum(conv.conv_forward(x, w, b, pad=1)[0] * dout), b, db)


@pytest.mark.parametrize("K", [32, 20])  # whole tiles of filters, and dout padded to them
def test_backward_workspace_estimate_matches_tracemalloc(direct_everywhere, K, traced_peak):
    """conv_backward_workspace's bytes for a plan with the direct dw, against what conv_backward allocates."""
    from volnet.ops import conv, conv_workspace, threads

    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 14, 14, 16)).astype(np.float32)
    w = rng.standard_normal((5, 5, 16, K)).astype(np.float32)
    _, cache = conv.conv_forward(x, w, np.zeros(K, np.float32), pad=2)
    dout = rng.standard_normal((16, 14, 14, K)).astype(np.float32)
    workers = threads.Workers(2, blas_held=True)
    peak = traced_peak(lambda: conv.conv_backward(dout, cache, input_grad=False, workers=workers))
    estimate = conv_workspace.conv_backward_workspace(cache.geometry, K, 4, cores=2, input_grad=False).extra
    assert 0.75 <= estimate / peak <= 1.25, (estimate, peak)


def test_kernel_closures_hold_only_tile_sizes():
    """Numba keys its disk cache of a closure by the closure's values: objects there (a dispatcher, a module)
    made every process compile again. Only ints may be closed over."""
    for make in (direct._forward_source, direct_weights._weight_gradient_source):
        kernel = make(7, 32)
        assert kernel.__closure__ and all(type(cell.cell_contents) is int for cell in kernel.__closure__)


@pytest.mark.parametrize("offset", [0, 4, 16])
def test_forward_reads_weights_at_any_alignment(offset):
    """Weights whole tiles of filters are read where they lie when 64-byte aligned, else from an aligned copy:
    the same numbers either way, and the layer's weights untouched."""
    rng = np.random.default_rng(offset)
    x = rng.standard_normal((2, 9, 9, 3)).astype(np.float32)
    K = direct.tile(32, np.float32)[1]
    buffer = np.zeros(5 * 5 * 3 * K * 4 + 128, dtype=np.uint8)
    start = -buffer.ctypes.data % aligned.ALIGNMENT + offset
    w = buffer[start:start + 5 * 5 * 3 * K * 4].view(np.float32).reshape(5, 5, 3, K)
    w[...] = rng.standard_normal(w.shape)
    before = w.copy()
    expected, cache = conv_forward_naive(x, w, np.ones(K, np.float32), pad=2)
    got = direct.correlate(cache.xp, w, cache.geometry, np.ones(K, np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(w, before)


def test_layers_create_their_weights_aligned_so_the_forward_reads_them_in_place(monkeypatch):
    from volnet.zoo import build_named

    net = build_named("lenet", classes=10, seed=0)
    weights = [layer.weight for layer in net.layers if getattr(layer, "weight", None) is not None]
    assert len(weights) == 4 and all(w.ctypes.data % aligned.ALIGNMENT == 0 for w in weights)
    assert all(w.flags.c_contiguous and w.flags.writeable for w in weights)
    copies = []
    real = aligned.zeros
    monkeypatch.setattr(aligned, "zeros", lambda *a: copies.append(a) or real(*a))
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    net.forward(np.ones((1, 28, 28, 1), np.float32))
    assert copies == []  # both CONVs (16 and 32 filters: whole tiles) took their weights as they are
    large = np.ones(aligned.ALIGNED_MAX_BYTES // 4 + 1, np.float32)
    assert aligned.copy(large) is large  # only BLAS reads weights that large: left where malloc put them
    small = np.arange(10.0)[1:]
    assert aligned.copy(small).ctypes.data % aligned.ALIGNMENT == 0
    np.testing.assert_array_equal(aligned.copy(small), small)


def test_one_image_takes_the_direct_forward_where_measured_faster(monkeypatch):
    """At batch 1 (no Winograd) the 3x3 layers of up to SINGLE_IMAGE_MULTIPLY depth x filters run direct;
    deeper ones, strided ones and batches keep their kernels."""
    from volnet.ops.conv_plan import plan_conv

    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    assert plan_conv(geometry((1, 32, 32, 32), 3, 1, 1), 32, np.float32).forward == "direct"
    assert plan_conv(geometry((1, 8, 8, 64), 3, 1, 1), 192, np.float32).forward == "direct"
    assert plan_conv(geometry((1, 16, 16, 128), 3, 1, 1), 128, np.float32).forward == "im2col"
    assert plan_conv(geometry((1, 32, 32, 64), 3, 2, 1, fit="crop"), 128, np.float32).forward == "im2col"
    assert plan_conv(geometry((2, 32, 32, 64), 3, 1, 1), 64, np.float32).forward != "direct"
    assert plan_conv(geometry((1, 16, 16, 64), 5, 1, 2), 192, np.float32).forward != "direct"  # 5x5: slower
