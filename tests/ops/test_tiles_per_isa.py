"""Every instruction set's register tiles compute what the naive loops do, whatever set this host has.

The tiles are closure constants chosen at run time from the host's instruction set (``direct.TILES`` and
``HALF_TILES``, ``direct_weights.TAP_TILES``, ``direct_input.TILE_VECTORS``, ``winograd_fused.TILES_PER_BLOCK``),
so a host of one set runs another's tiles when told its set is that one: here each set's tiles run on
random layers (tails of every tile included) against the naive twins. Their speed is measured on hosts of that
set, or on code compiled for it (docs/performance-log.md); a test proves them right. And the kernels compiled
for AVX2 (``NUMBA_CPU_FEATURES``), as an AVX2 host compiles them, give the numbers the naive loops give: on an
AVX-512 host that is the one place its tests run AVX2 code.
"""

import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import conv_arrays, conv_layers

from volnet.ops import direct, direct_input, direct_weights, threads, winograd_fused
from volnet.ops.conv import conv_backward_naive, conv_forward_naive
from volnet.ops.window import pad_spatial

pytestmark = pytest.mark.skipif(not direct.ENABLED, reason="Numba not installed, or VOLNET_NUMBA=0")

INSTRUCTION_SETS = sorted(direct.TILES)


@contextmanager
def instruction_set(isa: str):
    """The tiles of ``isa``, whatever this host's set (every module reads it through ``direct.isa``)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(direct, "isa", lambda: isa)
        yield


def tolerance(dtype) -> float:
    return 1e-4 if dtype == np.float32 else 1e-10


def test_every_module_has_tiles_for_every_instruction_set():
    for table in (direct.HALF_TILES, direct_weights.TAP_TILES, direct_input.TILE_VECTORS,
                  winograd_fused.TILES_PER_BLOCK):
        assert sorted(table) == INSTRUCTION_SETS
    # a use misspelt in MEASURED would silently never be planned
    assert set(direct.MEASURED) <= set(INSTRUCTION_SETS)
    assert all(set(uses) <= set(direct.USES) for uses in direct.MEASURED.values())


@settings(max_examples=40, deadline=None)
@given(isa=st.sampled_from(INSTRUCTION_SETS), setting=conv_layers())
def test_forward_and_weight_gradient_tiles_equal_naive(isa, setting):
    x, w, b = conv_arrays(setting)
    expected, cache = conv_forward_naive(x, w, b, setting["S"], setting["pad"], fit="crop")
    dout = np.random.default_rng(setting["seed"] + 1).standard_normal(expected.shape).astype(setting["dtype"])
    _, dw_naive, db_naive = conv_backward_naive(dout, cache)
    with instruction_set(isa):
        out = direct.correlate(cache.xp, w, cache.geometry, b, False, setting["threads"])
        dw, db = direct_weights.weight_gradient(cache.xp, dout, cache.geometry, setting["threads"])
    tol = tolerance(setting["dtype"])
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, dw_naive, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(db, db_naive, rtol=10 * tol, atol=10 * tol)


@settings(max_examples=30, deadline=None)
@given(isa=st.sampled_from(INSTRUCTION_SETS), depth=st.integers(1, 7), K=st.sampled_from([16, 32]),
       F=st.integers(1, 5), width=st.integers(1, 17), dtype=st.sampled_from([np.float32, np.float64]),
       workers=st.integers(1, 2), seed=st.integers(0, 2**32 - 1))
def test_input_gradient_tiles_equal_naive(isa, depth, K, F, width, dtype, workers, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, width, depth)).astype(dtype)
    w = rng.standard_normal((F, F, depth, K)).astype(dtype)
    out, cache = conv_forward_naive(x, w, np.zeros(K, dtype), 1, F // 2)
    dout = rng.standard_normal(out.shape).astype(dtype)
    expected, _, _ = conv_backward_naive(dout, cache)
    with instruction_set(isa):
        dx = direct_input.input_gradient(dout, w, cache.geometry, workers)
    np.testing.assert_allclose(dx, expected, rtol=tolerance(dtype), atol=tolerance(dtype))


@settings(max_examples=20, deadline=None)
@given(isa=st.sampled_from(INSTRUCTION_SETS), images=st.integers(1, 3), side=st.integers(5, 13),
       depth=st.sampled_from([16, 32]), K=st.integers(1, 40), workers=st.integers(1, 2),
       seed=st.integers(0, 2**32 - 1))
def test_compiled_winograd_blocks_equal_naive(isa, images, side, depth, K, workers, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((images, side, side, depth)).astype(np.float32)
    w = (rng.standard_normal((5, 5, depth, K)) / 10).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    expected, cache = conv_forward_naive(x, w, b, 1, 2)
    g = cache.geometry
    with instruction_set(isa):
        correlate = winograd_fused.correlator(g, K, np.float32, False, workers)
        with threads.network_pass(images):
            out = correlate(pad_spatial(x, g.pads), w, b, None)
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-5 * max(1.0, float(np.abs(expected).max())))


AVX2_SCRIPT = textwrap.dedent("""
    import numpy as np
    from volnet.ops import conv, direct, memo, tiled
    from volnet.ops.conv import conv_backward_naive, conv_forward_naive
    assert tiled.isa() == "avx2", tiled.isa()
    direct.MEASURED = {**direct.MEASURED, "avx2": direct.USES}  # every use, measured faster on AVX2 or not
    memo.forget()
    rng = np.random.default_rng(0)
    # LeNet's two CONVs (direct forward, dw and dx; the compiled Winograd and its flipped dx), a 3-channel 5x5
    # first layer, a strided 3x3 (forward and dx by phases), each against the naive loops
    for N, H, D, F, S, K in [(4, 28, 1, 5, 1, 16), (4, 14, 16, 5, 1, 32), (2, 16, 3, 5, 1, 64), (8, 16, 64, 3, 2, 128)]:
        x = rng.standard_normal((N, H, H, D)).astype(np.float32)
        w = (rng.standard_normal((F, F, D, K)) / F).astype(np.float32)
        b = rng.standard_normal(K).astype(np.float32)
        out, cache = conv.conv_forward(x, w, b, S, F // 2, fit="crop")
        expected, naive_cache = conv_forward_naive(x, w, b, S, F // 2, fit="crop")
        dout = rng.standard_normal(out.shape).astype(np.float32)
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4 * scale)
        for got, want in zip(conv.conv_backward(dout, cache), conv_backward_naive(dout, naive_cache)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * max(1.0, float(np.abs(want).max())))
        print(conv.plan_conv(cache.geometry, K, np.float32))
""")


def host_runs_avx2() -> bool:
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    return bool(features.get("avx2") and features.get("fma"))


@pytest.mark.slow
@pytest.mark.skipif(not direct.ENABLED or not host_runs_avx2(), reason="a host that runs AVX2 code")
def test_kernels_compiled_for_avx2_equal_naive(tmp_path):
    """The kernels as an AVX2 host compiles them (16 vector registers of 8 floats, its tiles), in a process told
    its CPU has AVX2 and FMA and nothing newer, with a cache of its own: equal to the naive loops."""
    environment = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,+f16c",
                   "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", AVX2_SCRIPT], env=environment, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    plans = done.stdout.splitlines()
    assert "forward='direct'" in plans[0] and "input_gradient='direct'" in plans[0]
    assert "forward='winograd_fused'" in plans[1] and "weight_gradient='direct'" in plans[1]
    assert "input_gradient='phases'" in plans[3]


@pytest.mark.parametrize("isa, full, half", [("avx512", (14, 32), (14, 16)), ("avx2", (2, 32), (4, 16))])
def test_a_weight_gradient_tile_half_as_wide_takes_the_taps_measured_for_it(isa, full, half):
    with instruction_set(isa):
        assert direct_weights.tap_tile(64, np.float32) == full
        assert direct_weights.tap_tile(16, np.float32) == half
        assert direct_weights.tap_tile(64, np.float64) == (full[0], full[1] // 2)  # float64: half the filters
        assert winograd_fused.tiles_per_block() == winograd_fused.TILES_PER_BLOCK[isa]
