"""The compiled input gradient of shallow stride-1 CONVs: equal to the naive loops on random layers (borders,
crops and tile tails included), float32 and float64, split over threads, equal to PyTorch, numerically
checked through conv_backward, planned only where it applies, and its memory estimate measured."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.ops import conv, conv_workspace, direct, direct_input, threads
from volnet.ops.conv import conv_backward_naive, conv_forward_naive
from volnet.ops.window import geometry

pytestmark = pytest.mark.skipif(not direct.ENABLED, reason="Numba not installed, or VOLNET_NUMBA=0")


@st.composite
def shallow_layers(draw):
    """Stride-1 layers of 1-7 channels: filter 1-5 in each direction, padding up to F-1 (borders where taps
    fall outside dout, and crops), 16 or 32 filters, inputs 1-20 wide (tiles of every tail)."""
    Fh, Fw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pad = draw(st.integers(0, min(Fh, Fw) - 1))
    H = draw(st.integers(max(1, Fh - 2 * pad), 12))
    W = draw(st.integers(max(1, Fw - 2 * pad), 20))
    return dict(x_shape=(draw(st.integers(1, 3)), H, W, draw(st.integers(1, 7))), F=(Fh, Fw), pad=pad,
                fit=draw(st.sampled_from([None, "crop"])), K=draw(st.sampled_from([16, 32])),
                dtype=draw(st.sampled_from([np.float32, np.float64])), workers=draw(st.integers(1, 2)),
                seed=draw(st.integers(0, 2**32 - 1)))


def _naive(setting):
    rng = np.random.default_rng(setting["seed"])
    dtype = setting["dtype"]
    x = rng.standard_normal(setting["x_shape"]).astype(dtype)
    w = rng.standard_normal((*setting["F"], x.shape[3], setting["K"])).astype(dtype)
    out, cache = conv_forward_naive(x, w, np.zeros(setting["K"], dtype), setting.get("S", 1), setting["pad"],
                                    fit=setting["fit"])
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, _, _ = conv_backward_naive(dout, cache)
    return dout, w, cache.geometry, dx


def _assert_equals_naive(kernel, setting):
    dout, w, g, expected = _naive(setting)
    dx = kernel(dout, w, g, setting["workers"])
    assert dx.dtype == setting["dtype"] and dx.shape == expected.shape
    tol = 1e-4 if setting["dtype"] == np.float32 else 1e-11
    np.testing.assert_allclose(dx, expected, rtol=tol, atol=tol)


@settings(max_examples=80, deadline=None)
@given(setting=shallow_layers())
def test_equals_naive(setting):
    _assert_equals_naive(direct_input.input_gradient, setting)


def test_strided_dout_and_split_give_the_same_numbers(rng):
    """A dout that is a strided view (the gradient of a padded layer above) reads as its contiguous copy,
    and two threads write what one does."""
    setting = dict(x_shape=(4, 9, 13, 3), F=(5, 5), pad=2, fit=None, K=32, dtype=np.float32, workers=1, seed=3)
    dout, w, g, expected = _naive(setting)
    wide = np.zeros((*dout.shape[:3], 48), np.float32)
    wide[..., :32] = dout
    strided = wide[..., :32]
    one = direct_input.input_gradient(strided, w, g, 1)
    np.testing.assert_array_equal(direct_input.input_gradient(dout, w, g, 2), one)
    np.testing.assert_allclose(one, expected, rtol=1e-4, atol=1e-4)


def test_equals_torch(torch, nchw, rng):
    x = rng.standard_normal((3, 28, 28, 1)).astype(np.float32)
    w = rng.standard_normal((5, 5, 1, 16)).astype(np.float32)
    dout = rng.standard_normal((3, 28, 28, 16)).astype(np.float32)
    g = geometry(x.shape, 5, 1, 2)
    theirs = torch.nn.grad.conv2d_input(nchw.to_torch(x).shape, nchw.filters_to_torch(w), nchw.to_torch(dout),
                                        padding=2)
    np.testing.assert_allclose(direct_input.input_gradient(dout, w, g), nchw.from_torch(theirs), rtol=1e-4,
                               atol=1e-4)


def test_gradient_checks_numerically_through_conv_backward(monkeypatch, check_grad):
    """float64 numerical gradient of an RGB first layer whose dx conv_backward takes from this kernel."""
    monkeypatch.setattr(direct, "isa", lambda: "avx512")  # the plan holds only where the tiles were measured
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 7, 9, 3)), rng.standard_normal((5, 3, 3, 16)), rng.standard_normal(16)
    _, cache = conv.conv_forward(x, w, b, pad=1, fit="crop")
    assert conv.plan_conv(cache.geometry, 16, np.float64).input_gradient == "direct"
    dout = rng.standard_normal(conv.conv_forward(x, w, b, pad=1, fit="crop")[0].shape)
    dx, _, _ = conv.conv_backward(dout, cache)
    check_grad(lambda: np.sum(conv.conv_forward(x, w, b, pad=1, fit="crop")[0] * dout), x, dx)


def test_planned_only_where_it_applies(monkeypatch):
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    def plan(shape, F, S, K, dtype=np.float32):
        return conv.plan_conv(geometry(shape, F, S, F // 2, fit="crop"), K, dtype)

    assert plan((8, 32, 32, 3), 5, 1, 64).input_gradient == "direct"
    assert plan((8, 28, 28, 1), 5, 1, 16, np.float64).input_gradient == "direct"
    assert plan((8, 32, 32, 3), 5, 1, 24).input_gradient == "shallow"  # not whole vectors of filters
    assert plan((8, 224, 224, 3), 7, 2, 64).input_gradient == "shallow"  # strided
    assert plan((8, 32, 32, 8), 3, 1, 32).input_gradient == "flipped"  # deep enough for the flipped CONV
    monkeypatch.setattr(direct, "isa", lambda: "avx2")  # first layers measured faster there too
    assert plan((8, 32, 32, 3), 5, 1, 64).input_gradient == "direct"
    monkeypatch.setattr(direct, "isa", lambda: "portable")  # tiles not measured there
    assert plan((8, 32, 32, 3), 5, 1, 64).input_gradient == "shallow"


def test_tile_fits_the_unrolled_registers(monkeypatch):
    for isa, (vectors, vectors_float64) in direct_input.TILE_VECTORS.items():
        monkeypatch.setattr(direct, "isa", lambda isa=isa: isa)
        for depth in range(1, 8):
            for dtype, most in ((np.float32, vectors), (np.float64, vectors_float64)):
                pixels = direct_input.tile(depth, dtype)
                assert pixels >= 1 and (pixels * depth <= most or pixels == 1)  # (one pixel: not planned)


def test_not_planned_where_the_tile_would_hold_one_pixel(monkeypatch):
    """A one-pixel tile ran 5x slower than two: AVX2's 7 float32 vectors hold two pixels of at most 3 channels."""
    monkeypatch.setattr(direct, "isa", lambda: "avx2")
    assert direct_input.applies(geometry((8, 32, 32, 3), 5, 1, 2), 3, 64, np.float32)
    assert not direct_input.applies(geometry((8, 32, 32, 4), 5, 1, 2), 4, 64, np.float32)
    # float64 takes twice the registers: 3 vectors, one channel's 3 pixels (RGB's would be one pixel each)
    assert direct_input.applies(geometry((8, 28, 28, 1), 5, 1, 2), 1, 16, np.float64)
    assert not direct_input.applies(geometry((8, 32, 32, 3), 5, 1, 2), 3, 64, np.float64)
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    assert direct_input.applies(geometry((8, 32, 32, 7), 5, 1, 2), 7, 64, np.float32)


def test_backward_workspace_estimate_matches_tracemalloc(monkeypatch, traced_peak):
    """conv_backward_workspace's bytes for the direct input gradient, against what conv_backward allocates."""
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 32, 32, 3)).astype(np.float32)
    w = rng.standard_normal((5, 5, 3, 32)).astype(np.float32)
    _, cache = conv.conv_forward(x, w, np.zeros(32, np.float32), pad=2)
    dout = rng.standard_normal((16, 32, 32, 32)).astype(np.float32)
    workers = threads.Workers(2, blas_held=True)
    peak = traced_peak(lambda: conv.conv_backward(dout, cache, workers=workers))
    estimate = conv_workspace.conv_backward_workspace(cache.geometry, 32, 4, cores=2)
    assert conv.plan_conv(cache.geometry, 32, np.float32, 2, True).input_gradient == "direct"
    assert 0.75 <= estimate.extra / peak <= 1.25, (estimate, peak)


def test_kernel_closure_holds_only_tile_sizes():
    """As for volnet.ops.direct's kernels: Numba keys its disk cache of a closure by the closure's values."""
    kernel = direct_input._input_gradient_source(4, 3)
    assert kernel.__closure__ and all(type(cell.cell_contents) is int for cell in kernel.__closure__)


# -- strided layers: the input gradient by stride phases ------------------------------------------------------


@st.composite
def strided_layers(draw):
    """Layers of stride 2-4 in either direction: filters 1-6 (smaller than the stride too: phases no tap
    reaches), padding up to F-1, rows no window reads cropped or padded (fit "crop" or "pad"), 1-40 input
    channels (tails of every tile of dx's channels), 1-20 filters, inputs up to 17 wide (output rows of every
    tile tail)."""
    Sh, Sw = draw(st.integers(2, 4)), draw(st.integers(1, 4))
    Fh, Fw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pad = draw(st.integers(0, min(Fh, Fw) - 1))
    H = draw(st.integers(max(1, Fh - 2 * pad), 13))
    W = draw(st.integers(max(1, Fw - 2 * pad), 17))
    return dict(x_shape=(draw(st.integers(1, 3)), H, W, draw(st.integers(1, 40))), F=(Fh, Fw), S=(Sh, Sw),
                pad=pad, fit=draw(st.sampled_from(["crop", "pad"])), K=draw(st.integers(1, 20)),
                dtype=draw(st.sampled_from([np.float32, np.float64])), workers=draw(st.integers(1, 2)),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=80, deadline=None)
@given(setting=strided_layers())
def test_phases_equal_naive(setting):
    _assert_equals_naive(direct_input.input_gradient_by_phases, setting)


def test_phases_of_one_axis():
    """3x3/2 with padding 1: even rows take the middle tap from dout row a, odd ones the first tap from
    row a + 1 and the last from row a; a 1x1/2 layer reaches the even rows only."""
    assert direct_input.axis_phases(8, 3, 2, 1) == [(1, 1, 0, 4), (0, 2, 1, 4)]
    assert direct_input.axis_phases(7, 1, 2, 0) == [(0, 1, 0, 4), (1, 0, 0, 3)]


def test_phases_equal_torch(torch, nchw, rng):
    x = rng.standard_normal((2, 32, 32, 64)).astype(np.float32)
    w = rng.standard_normal((3, 3, 64, 128)).astype(np.float32)
    g = geometry(x.shape, 3, 2, 1, fit="crop")
    dout = rng.standard_normal((2, *g.out_hw, 128)).astype(np.float32)
    theirs = torch.nn.grad.conv2d_input(nchw.to_torch(x).shape, nchw.filters_to_torch(w), nchw.to_torch(dout),
                                        stride=2, padding=1)
    np.testing.assert_allclose(direct_input.input_gradient_by_phases(dout, w, g, 2), nchw.from_torch(theirs),
                               rtol=1e-4, atol=1e-3)


def test_phases_gradient_checks_numerically_through_conv_backward(monkeypatch, check_grad):
    """float64 numerical gradient of a strided layer whose dx conv_backward takes by phases."""
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal((2, 9, 8, 8)), rng.standard_normal((3, 4, 8, 5)), rng.standard_normal(5)
    _, cache = conv.conv_forward(x, w, b, 2, 1, fit="crop")
    assert conv.plan_conv(cache.geometry, 5, np.float64).input_gradient == "phases"
    dout = rng.standard_normal(conv.conv_forward(x, w, b, 2, 1, fit="crop")[0].shape)
    dx, _, _ = conv.conv_backward(dout, cache)
    check_grad(lambda: np.sum(conv.conv_forward(x, w, b, 2, 1, fit="crop")[0] * dout), x, dx)


def test_phases_planned_only_where_they_apply(monkeypatch):
    monkeypatch.setattr(direct, "isa", lambda: "avx512")

    def plan(shape, F, S, K, dtype=np.float32):
        return conv.plan_conv(geometry(shape, F, S, F // 2, fit="crop"), K, dtype).input_gradient

    assert plan((32, 32, 32, 64), 3, 2, 128) == "phases"  # ResNet's downsampling CONVs
    assert plan((32, 16, 16, 128), 3, 2, 256) == "phases"
    assert plan((32, 8, 8, 256), 3, 2, 512) == "col2im"  # deeper: its sub-filters lost (measured)
    assert plan((32, 32, 32, 64), 1, 2, 128) == "pointwise"  # 1x1/2: one phase, a plain multiply
    assert plan((8, 224, 224, 3), 7, 2, 64) == "shallow"
    monkeypatch.setattr(direct, "isa", lambda: "avx2")  # strided layers' tiles lost there
    assert plan((32, 32, 32, 64), 3, 2, 128) == "col2im"


def test_phases_workspace_estimate_matches_tracemalloc(monkeypatch, traced_peak):
    """conv_backward_workspace's bytes for the input gradient by phases, against what conv_backward allocates."""
    monkeypatch.setattr(direct, "isa", lambda: "avx512")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((8, 16, 16, 32)).astype(np.float32)
    w = rng.standard_normal((3, 3, 32, 64)).astype(np.float32)
    _, cache = conv.conv_forward(x, w, np.zeros(64, np.float32), 2, 1, fit="crop")
    dout = rng.standard_normal((8, *cache.geometry.out_hw, 64)).astype(np.float32)
    workers = threads.Workers(2, blas_held=True)
    peak = traced_peak(lambda: conv.conv_backward(dout, cache, workers=workers))
    assert conv.plan_conv(cache.geometry, 64, np.float32, 2, True).input_gradient == "phases"
    estimate = conv_workspace.conv_backward_workspace(cache.geometry, 64, 4, cores=2)
    assert 0.75 <= estimate.extra / peak <= 1.25, (estimate, peak)
