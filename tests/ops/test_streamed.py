"""The streamed CONV (few output pixels, many weights; ops/streamed.py): equal to the naive loops on random
layers (strides, dilations, crops, filter tails, float32 and float64, split into parts), equal to PyTorch,
planned at batch 1 only for the layers it was measured on, and its memory as estimated."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.ops import aligned, conv, conv_workspace, streamed, threads
from volnet.ops.conv import conv_forward_naive
from volnet.ops.conv_plan import plan_conv
from volnet.ops.window import geometry, pad_spatial
from strategies import conv_arrays, conv_layers

pytestmark = pytest.mark.skipif(not streamed.direct.ENABLED, reason="Numba not installed, or VOLNET_NUMBA=0")


@settings(max_examples=60, deadline=None)
@given(setting=conv_layers(dilations=st.integers(1, 2), widths=9), parts=st.integers(1, 3))
def test_correlate_equals_naive(setting, parts):
    x, w, b = conv_arrays(setting)
    expected, cache = conv_forward_naive(x, w, b if setting["bias"] else np.zeros_like(b), setting["S"],
                                         setting["pad"], setting["dilation"], fit="crop")
    out = streamed.correlate(cache.xp, cache.geometry, w, b if setting["bias"] else None, setting["relu"], parts)
    assert out.dtype == setting["dtype"] and out.shape == expected.shape
    tol = 1e-4 if setting["dtype"] == np.float32 else 1e-11
    np.testing.assert_allclose(out, np.maximum(expected, 0) if setting["relu"] else expected, rtol=tol, atol=tol)


def test_equals_torch(torch, nchw):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 9, 9, 48)).astype(np.float32)
    w = rng.standard_normal((3, 3, 48, 70)).astype(np.float32)  # 70 filters: a tail of a tile
    b = rng.standard_normal(70).astype(np.float32)
    g = geometry(x.shape, 3, 2, 1)
    out = streamed.correlate(pad_spatial(x, g.pads), g, w, b, parts=2)
    theirs = torch.nn.functional.conv2d(nchw.to_torch(x), nchw.filters_to_torch(w), torch.tensor(b), stride=2,
                                        padding=1)
    np.testing.assert_allclose(out, nchw.from_torch(theirs), rtol=1e-4, atol=1e-4)


def test_weights_in_place_wherever_they_lie(monkeypatch):
    """Weights 16 bytes off a cache line (where malloc puts large arrays) are read in place, not copied: the
    same numbers."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 4, 32))
    placed = aligned.zeros((3 * 3 * 32 * 64 + 2,), np.float64)[2:].reshape(3, 3, 32, 64)  # 16 bytes off
    placed[...] = rng.standard_normal(placed.shape)
    g = geometry(x.shape, 3, 1, 1)
    expected, _ = conv_forward_naive(x, placed, np.zeros(64), pad=1)
    monkeypatch.setattr(streamed.direct, "padded_weights", lambda *a: pytest.fail("the weights were copied"))
    np.testing.assert_allclose(streamed.correlate(pad_spatial(x, g.pads), g, placed, parts=2), expected,
                               rtol=0, atol=1e-11)


@pytest.mark.parametrize("batch, size, depth, filters, stride, expected", [
    (1, 4, 512, 512, 1, True),     # ResNet's last layers at batch 1: 9.4 MB of weights
    (1, 8, 256, 256, 1, True),
    (2, 8, 256, 256, 1, False),    # 128 output pixels
    (1, 16, 128, 128, 1, False),   # 256 output pixels (the direct forward takes it)
    (1, 16, 128, 256, 2, True),    # ResNet's strided 3x3/2 into 8x8x256: 1.2 MB, before the direct forward's rows
    (1, 8, 128, 128, 1, True),     # 590 KB
    (1, 4, 64, 64, 1, False),      # 147 KB of weights
])
def test_plan_at_batch_one(batch, size, depth, filters, stride, expected, monkeypatch):
    monkeypatch.setattr(streamed.direct, "isa", lambda: "avx512")
    g = geometry((batch, size, size, depth), 3, stride, 1, fit="crop")
    workers = threads.Workers(2, blas_held=True, split_rows=batch == 1)
    plan = plan_conv(g, filters, np.float32, workers.cores, workers.blas_held, workers.split_rows)
    assert (plan.forward == "streamed") == expected
    assert plan_conv(g, filters, np.float32, 2, True, False).forward != "streamed"  # batches split by images


def test_conv_forward_takes_it_and_its_memory_is_as_estimated(traced_peak, monkeypatch):
    monkeypatch.setattr(streamed.direct, "isa", lambda: "avx512")
    monkeypatch.setattr(streamed, "MIN_WEIGHT_BYTES", 0)  # a small layer, planned as the large ones
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 4, 4, 128)).astype(np.float32)
    w = aligned.copy(rng.standard_normal((3, 3, 128, 100)).astype(np.float32))  # 100 filters: padded to tiles
    b = rng.standard_normal(100).astype(np.float32)
    with threads.network_pass(1, split_image=True) as workers:
        if not workers.split_rows:
            pytest.skip("one image is not split over Numba's threads here (one core, or no thread-safe layer)")
        out, cache = conv.conv_forward(x, w, b, 1, 1, relu=True, workers=workers)
        g = cache.geometry
        assert plan_conv(g, 100, np.float32, workers.cores, True, True).forward == "streamed"
        peak = traced_peak(lambda: conv.conv_forward(x, w, b, 1, 1, relu=True, workers=workers))
    expected, _ = conv_forward_naive(x, w, b, pad=1)
    np.testing.assert_allclose(out, np.maximum(expected, 0), rtol=1e-4, atol=1e-4)
    estimate = conv_workspace.conv_workspace(g, 100, 4, cores=workers.cores)
    total = sum(nbytes for nbytes, _ in estimate.private) + estimate.out + estimate.transient
    assert 0.8 <= total / peak <= 1.25, (estimate, peak)
