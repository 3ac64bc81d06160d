"""volnet.ops.native: a compiled kernel's call written down as data and made from compiled code gives what the
call itself gives, for the argument types volnet's kernels take (arrays of any layout, integers, floats, flags,
tuples); a kernel not compiled for the arguments' exact types is not prepared; a pool's worker makes such
calls without the GIL, spinning or woken, and a split (threads.split_compiled) hands them out."""

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.ops import handoff, native, threads
from volnet.ops.jit import ENABLED, compiled

pytestmark = pytest.mark.skipif(not ENABLED, reason="Numba is off")


@compiled
def _record(out, a, b, count, scale, pair, flag):  # pragma: no cover - compiled
    # what a kernel sees of each argument, written to out; b (any layout) changed in place
    out[0] = a.sum()
    out[1] = a.shape[0] * 1000 + a.shape[-1]
    out[2] = b.sum()
    out[3] = count
    out[4] = scale
    out[5] = pair[0] * 100 + pair[1]
    out[6] = 1.0 if flag else -1.0
    b *= scale


@compiled
def _add_range(total, start, stop):  # pragma: no cover - compiled
    for i in range(start, stop):
        total[i] += i


@compiled
def _add_tuple(total, values):  # pragma: no cover - compiled
    for value in values:
        total[0] += value


def _made_natively(kernel, args):
    """``kernel(*args)`` made as the pool's workers make it: prepared, packed into a row, called from compiled
    code (``native.functions``' ``call``, inlined into a compiled runner)."""
    import numba

    pack, call, _ = native.functions()

    @numba.njit
    def run(trampoline, calls, offset):
        call(trampoline, calls, offset)

    prepared = native.prepared(kernel, args)
    assert prepared is not None
    calls = np.zeros(8 + prepared.slots, dtype=np.int64)
    assert pack(calls, 8, args) == 8 + prepared.slots  # every argument where the trampoline reads it
    run(prepared.trampoline, calls, 8)


@st.composite
def _arrays(draw, dtype):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    steps = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    whole = np.arange(np.prod([n * s for n, s in zip(shape, steps)]), dtype=dtype).reshape(
        [n * s for n, s in zip(shape, steps)])
    view = whole[tuple(slice(None, None, s) for s in steps)]  # strided where a step is above 1
    return view if draw(st.booleans()) else np.asfortranarray(view)


@given(dtype=st.sampled_from([np.float32, np.float64]), data=st.data(), count=st.integers(-2**40, 2**40),
       scale=st.floats(-4, 4, width=32), pair=st.tuples(st.integers(-50, 50), st.integers(-50, 50)),
       flag=st.booleans())
@settings(max_examples=40, deadline=None)
def test_a_call_made_from_compiled_code_equals_the_call_itself(dtype, data, count, scale, pair, flag):
    a, b = data.draw(_arrays(dtype)), data.draw(_arrays(dtype))
    scale = dtype(scale)
    original, expected_out = b.copy(), np.zeros(7)
    _record(expected_out, a, b, count, scale, pair, flag)  # compiles for these types
    expected_b, b[...] = b.copy(), original
    out = np.zeros(7)
    _made_natively(_record, (out, a, b, count, scale, pair, flag))
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(b, expected_b)  # written through the view's strides


def test_a_compiled_kernel_is_prepared_for_new_types_and_anything_else_is_not():
    total = np.zeros(6)
    assert native.prepared(lambda *args: None, (total, 0, 6)) is None  # a Python function
    assert native.prepared(_add_range, (total, 0, 6)) == native.prepared(_add_range, (total, 2, 3))  # remembered
    single = np.zeros(6, dtype=np.float32)  # types the kernel was not called with: compiled for them
    _made_natively(_add_range, (single, 1, 4))
    np.testing.assert_array_equal(single, [0, 1, 2, 3, 0, 0])
    assert native.prepared(_add_range, (total, "0", 6)) is None  # arguments the kernel does not compile for


@pytest.mark.parametrize("asleep", [False, True])
def test_a_worker_makes_compiled_calls_spinning_or_woken(asleep):
    pool = handoff.SpinningPool(1)
    total = np.zeros(10)
    _add_range(total, 0, 0)
    try:
        for round_ in range(5):
            if asleep:  # past its spin the worker blocks; the call wakes it
                deadline = time.monotonic() + 5
                while not pool._sleeping[0] and time.monotonic() < deadline:
                    time.sleep(0.002)
                assert pool._sleeping[0]
            calls = [(_add_range, (total, 0, 4)), (_add_range, (total, 6, 10))]
            assert pool.run_calls(0, calls)
            assert pool.results(1) == [None]
            np.testing.assert_array_equal(total, (round_ + 1) * np.array([0, 1, 2, 3, 0, 0, 6, 7, 8, 9]))
        pool.run(0, threading.get_ident)  # Python parts still run after compiled ones
        assert pool.results(1)[0] != threading.get_ident()
    finally:
        pool.close(wait=True)
    assert not any(thread.is_alive() for thread in pool._threads)


def test_calls_that_do_not_fit_a_row_are_refused_and_nothing_is_posted():
    pool = handoff.SpinningPool(1)
    total = np.zeros(4)
    _add_range(total, 0, 0)  # compiled
    many = [(_add_range, (total, 0, 1))] * (handoff.MAX_CALLS + 1)
    wide = (total, (1,) * handoff.CALL_SLOTS)  # a tuple of as many values as a row holds
    _add_tuple(np.zeros(4), wide[1])  # compiled
    try:
        assert pool.run_calls(0, many[:1], cpu=None)  # (a worker taken to be where it was asked to run)
        assert pool.results(1) == [None] and total[0] == 0  # (adds 0)
        assert not pool.run_calls(0, many)
        assert not pool.run_calls(0, [(lambda *args: None, (total, 0, 1))])  # not compiled
        assert not pool.run_calls(0, [(_add_range, (total, 0, 1))], cpu=1)  # the worker must move first
        assert not pool.run_calls(0, [(_add_tuple, wide)])
        assert pool._posted == [1]
        assert np.all(total == 0)
    finally:
        pool.close(wait=True)


@pytest.fixture
def counted_posts(monkeypatch):
    """``{"compiled": n, "python": n}``: the parts the pools' workers were given, as compiled calls or not."""
    posts = {"compiled": 0, "python": 0}
    run_calls, run = handoff.SpinningPool.run_calls, handoff.SpinningPool.run

    def counted_run_calls(self, worker, calls, cpu=None):
        made = run_calls(self, worker, calls, cpu)
        posts["compiled"] += made
        return made

    def counted_run(self, worker, task):
        posts["python"] += task is not None
        return run(self, worker, task)

    monkeypatch.setattr(handoff.SpinningPool, "run_calls", counted_run_calls)
    monkeypatch.setattr(handoff.SpinningPool, "run", counted_run)
    return posts


@pytest.mark.skipif(threads.threadpoolctl is None, reason="needs threadpoolctl")
def test_a_split_of_compiled_calls_gives_each_worker_its_calls_as_data(counted_posts):
    scheduler = threads.Scheduler()
    total, asked = np.zeros(40), []

    def calls_of(start, stop):
        asked.append((start, stop))
        return [(_add_range, (total, start, stop))]

    try:
        for _ in range(20):
            scheduler.split_compiled(calls_of, 40, 2, blas_held=True)
        assert asked[:2] == [(20, 40), (0, 20)]  # the worker's part asked for first, on this thread
        np.testing.assert_array_equal(total, 20 * np.arange(40.0))
        # the first split's worker part runs in Python (it moves the worker to its CPU), later ones as data,
        # unless the worker's CPU changed
        assert counted_posts["compiled"] >= 10 and counted_posts["compiled"] + counted_posts["python"] == 20
    finally:
        scheduler.close()


@pytest.mark.skipif(threads.threadpoolctl is None, reason="needs threadpoolctl")
def test_a_part_with_a_python_call_runs_in_python_and_its_error_reaches_the_caller(counted_posts):
    scheduler = threads.Scheduler()
    total = np.zeros(8)

    def failing(start, stop):
        if start:  # the worker's part
            raise ValueError(f"part {start}..{stop} failed")

    try:
        for _ in range(3):
            scheduler.split_compiled(lambda start, stop: [(_add_range, (total, start, stop))], 8, 2, blas_held=True)
        compiled_before = counted_posts["compiled"]
        with pytest.raises(ValueError, match=r"part 4\.\.8 failed"):
            scheduler.split_compiled(lambda start, stop: [(_add_range, (total, start, stop)), (failing, (start, stop))],
                                     8, 2, blas_held=True)
        assert counted_posts["compiled"] == compiled_before  # that part was not made from compiled code
        np.testing.assert_array_equal(total, 4 * np.arange(8.0))  # each part's compiled call ran before
    finally:
        scheduler.close()


@pytest.mark.skipif(threads.threadpoolctl is None, reason="needs threadpoolctl")
def test_a_split_of_compiled_calls_runs_them_in_python_on_a_blocking_pool(monkeypatch):
    monkeypatch.setattr(handoff, "spins", lambda: False)  # (no time-stamp counter, or not x86-64)
    scheduler = threads.Scheduler()
    total = np.zeros(12)
    try:
        for _ in range(3):
            scheduler.split_compiled(lambda start, stop: [(_add_range, (total, start, stop))], 12, 3, blas_held=True)
        assert isinstance(scheduler._pool, handoff.BlockingPool)
    finally:
        scheduler.close()
    np.testing.assert_array_equal(total, 3 * np.arange(12.0))


# Two tiles of one kernel, each compiled first by its own process into one disk cache, then both loaded by a third
# process that has a worker make calls of each (the worker's half of the columns checked as well as the caller's).
_COMPILE_ONE = """
import sys
import numpy as np
from volnet.ops import two_sided
from volnet.ops.winograd_tiles import F2, F4
two_sided.two_sided({"F2": F2.G, "F4": F4.G}[sys.argv[1]], np.ones((9, 40), np.float32))
"""
_LOAD_BOTH = """
import numpy as np
from volnet.ops import threads, two_sided
from volnet.ops.winograd_tiles import F2, F4
rng = np.random.default_rng(0)
for G in (F4.G, F2.G):  # both loaded from the cache before either is prepared for a worker
    two_sided.two_sided(G, np.ones((9, 40), np.float32))
for name, G in (("F4", F4.G), ("F2", F2.G)):
    x = rng.standard_normal((9, 64000)).astype(np.float32)
    for _ in range(3):  # the first split may move the worker to its CPU (a Python part); the others not
        got = two_sided.two_sided(G, x, threads.Workers(2, blas_held=True))
        right = np.isclose(got, np.kron(G, G) @ x, atol=1e-3)
        print(name, bool(right[:, :32000].all()), bool(right[:, 32000:].all()))
"""


@pytest.mark.slow
def test_tiles_compiled_by_different_processes_each_run_their_own_code(tmp_path):
    # Numba names compiled code by the function's qualified name and a per-process count of compiles, so the first
    # compile of any closure in two processes gets one name; a worker's call by that name then ran the other tile
    # (the worker's columns of F(4x4)'s 36 rows written by F(2x2)'s kernel, 16 rows; the reverse wrote past them)
    import os
    import subprocess
    import sys

    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for name in ("F2", "F4"):
        subprocess.run([sys.executable, "-c", _COMPILE_ONE, name], env=environment, check=True, timeout=300)
    result = subprocess.run([sys.executable, "-c", _LOAD_BOTH], env=environment, check=True, timeout=300,
                            capture_output=True, text=True)
    assert result.stdout.split("\n")[:-1] == [f"{name} True True" for name in ("F4",) * 3 + ("F2",) * 3]
