"""Winograd's filter transforms (a matrix on both sides of each column's square): the compiled kernel equals the
Kronecker product it replaces, on random matrices, column counts (tails under a step) and splits, and without
Numba it is that product."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.ops import threads, two_sided
from volnet.ops.jit import ENABLED
from volnet.ops.winograd_tiles import F2, F4

# The matrices' shapes the transforms take: F(2x2, 3x3) and F(4x4, 3x3) forward and back, F(4x4, 5x5) forward and
# back (volnet.ops.winograd, volnet.ops.winograd_5x5).
SHAPES = [(4, 3), (3, 4), (6, 3), (3, 6), (8, 5), (5, 8)]


@pytest.mark.skipif(not ENABLED, reason="Numba is not installed (or VOLNET_NUMBA=0)")
@settings(max_examples=30, deadline=None)
@given(shape=st.sampled_from(SHAPES), columns=st.integers(1, 3 * two_sided.COLUMNS + 5),
       dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**32 - 1))
def test_compiled_transform_equals_the_kronecker_product(shape, columns, dtype, seed):
    rng = np.random.default_rng(seed)
    P, I = shape
    matrix = rng.standard_normal(shape)
    x = rng.standard_normal((I * I, columns)).astype(dtype)
    got = two_sided.two_sided(matrix, x)
    expected = np.kron(matrix, matrix) @ x.astype(np.float64)
    assert got.shape == (P * P, columns) and got.dtype == dtype
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())


def test_a_large_transform_split_over_the_cores_equals_one_core():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 64 * 1000 + 7)).astype(np.float32)  # 2.3 MB in and 4 MB out: parts worth a core
    one = two_sided.two_sided(F2.G, x)
    split = two_sided.two_sided(F2.G, x, threads.Workers(2, blas_held=True))
    np.testing.assert_array_equal(split, one)
    np.testing.assert_allclose(one, np.kron(F2.G, F2.G) @ x, rtol=1e-5, atol=1e-5)


def test_each_column_is_the_matrix_on_both_sides_of_its_square():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 3, 5))  # five 3x3 filters
    got = two_sided.two_sided(F4.G, w.reshape(9, 5))
    for c in range(5):
        np.testing.assert_allclose(got[:, c].reshape(6, 6), F4.G @ w[:, :, c] @ F4.G.T, rtol=1e-12, atol=1e-12)


def test_without_numba_it_is_the_kronecker_product(monkeypatch):
    monkeypatch.setattr(two_sided, "ENABLED", False)
    x = np.arange(9 * 4, dtype=np.float64).reshape(9, 4)
    np.testing.assert_allclose(two_sided.two_sided(F2.G, x), np.kron(F2.G, F2.G) @ x)


def test_rows_that_do_not_match_the_matrix_are_refused():
    with pytest.raises(ValueError, match="x has 8 rows, a 4x3 matrix on both sides needs 9"):
        two_sided.two_sided(F2.G, np.zeros((8, 4)))
