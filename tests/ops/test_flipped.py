"""The input gradient's filters, flipped in space and transposed by a compiled blocked copy: equal to
NumPy's copy of the view for any shape (block tails included), float32 and float64, split over threads."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.ops import threads
from volnet.ops.flipped import flipped_filters


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 40), st.integers(1, 40)),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_equals_numpys_copy_of_the_view(shape, dtype, seed):
    w = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    flipped = flipped_filters(w)
    assert flipped.dtype == dtype and flipped.flags.c_contiguous
    np.testing.assert_array_equal(flipped, np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2)))


def test_split_over_threads_and_strided_weights(monkeypatch):
    """Two threads (parts of a few blocks each) write what one does, from a strided view of the weights."""
    monkeypatch.setattr(threads, "MIN_PART_BYTES", 1)
    wide = np.random.default_rng(1).standard_normal((3, 3, 70, 90)).astype(np.float32)
    w = wide[..., ::2]
    expected = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))
    workers = threads.Workers(2, blas_held=True)
    assert workers.for_bytes(2 * w.nbytes, 5) == 2
    np.testing.assert_array_equal(flipped_filters(w, workers), expected)
