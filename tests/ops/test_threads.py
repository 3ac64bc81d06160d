"""volnet.ops.threads: a batch split over threads gives the same numbers as in one piece, with BLAS held to one
thread while the parts run and given back afterwards (errors included); network passes hold the cores and hand
their Workers to the kernels, whose split depends on that argument alone."""

import multiprocessing
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import window_settings, winograd_enabled

from volnet import Sequential
from volnet.layers import FC, Conv2D, ReLU
from volnet import ops
from volnet.layers import MaxPool
from volnet.ops import blas_warmup, conv_rows, dense, direct, threads
from volnet.ops.pool import pool_backward, pool_backward_naive, pool_forward, pool_forward_naive
from volnet.ops.conv import conv_backward, conv_backward_naive, conv_forward, conv_forward_naive

needs_threadpoolctl = pytest.mark.skipif(threads.threadpoolctl is None, reason="threadpoolctl is not installed")


SCHEDULER = threads.scheduler()


def blas_threads() -> int:
    return min(lib.num_threads for lib in SCHEDULER.blas().lib_controllers)


@pytest.fixture
def two_blas_threads():
    """NumPy's BLAS on 2 threads for the test (whatever the machine has), restored afterwards."""
    if threads.threadpoolctl is None or not SCHEDULER.blas().lib_controllers:
        pytest.skip("threadpoolctl, or a BLAS it can see, is missing")
    with SCHEDULER.blas().limit(limits=2):
        yield


@pytest.fixture
def split_everything(monkeypatch):
    """Split even the tiny layers of the tests, which are far below MIN_PART_MULTIPLY_ADDS."""
    monkeypatch.setattr(threads, "MIN_PART_MULTIPLY_ADDS", 1)
    monkeypatch.setattr(direct, "MIN_PART_MULTIPLY_ADDS", 1)


@given(count=st.integers(0, 50), workers=st.integers(1, 8))
def test_parts_cover_the_range_in_near_equal_contiguous_pieces(count, workers):
    chunks = threads.parts(count, workers)
    assert len(chunks) == max(1, min(workers, count))
    assert chunks[0][0] == 0 and chunks[-1][1] == count
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    sizes = [stop - start for start, stop in chunks]
    assert max(sizes) - min(sizes) <= 1


def test_workers_for_keeps_parts_above_the_minimum_work():
    least = threads.MIN_PART_MULTIPLY_ADDS
    assert threads.workers_for(10 * least, 64, cores=2) == 2
    assert threads.workers_for(least, 64, cores=2) == 1  # two halves of it would be too small
    assert threads.workers_for(10 * least, 1, cores=2) == 1  # one image cannot be split
    assert threads.workers_for(0, 64, cores=2) == 1


def test_workers_decide_from_their_numbers_alone():
    least, most = threads.MIN_PART_BYTES, 10**12
    held, alone = threads.Workers(4, blas_held=True), threads.Workers(4)
    assert held.for_multiply_adds(most, 64) == 4 and held.for_multiply_adds(most, 3) == 3
    assert alone.for_multiply_adds(most, 64) == 1  # BLAS's own threads take the cores
    assert held.for_bytes(10 * least, 64) == alone.for_bytes(10 * least, 64) == 4  # no BLAS: split either way
    assert alone.for_bytes(least, 64) == 1 and threads.memory_workers_for(3 * least, 64, 4) == 3
    assert threads.SERIAL.for_bytes(most, 64) == threads.SERIAL.for_multiply_adds(most, 64) == 1
    assert threads.Workers().count() == threads.cores()  # None: BLAS's thread count now


def _recording_work(events, results):
    def work(start, stop):
        events.append(("allocate", start))
        yield
        events.append(("run", start, threading.get_ident(), blas_threads()))
        return results(start, stop)
    return work


@needs_threadpoolctl
def test_split_allocates_every_part_first_then_runs_them_on_their_own_threads(two_blas_threads):
    events = []
    out = threads.split(_recording_work(events, lambda a, b: list(range(a, b))), 10, 2)
    assert out == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert events[:2] == [("allocate", 0), ("allocate", 5)]  # in order, on this thread, before any part runs
    runs = events[2:]
    assert {run[1] for run in runs} == {0, 5}
    assert len({run[2] for run in runs}) == 2  # two threads
    assert all(run[3] == 1 for run in runs)  # BLAS on one thread while the parts run
    assert blas_threads() == 2  # ... and given back


@needs_threadpoolctl
@pytest.mark.parametrize("failing", [0, 5], ids=["this thread's part", "the other thread's part"])
def test_split_gives_blas_back_when_a_part_fails(failing, two_blas_threads):
    def work(start, stop):
        yield
        if start == failing:
            raise ValueError("part failed")
        return start

    with pytest.raises(ValueError, match="part failed"):
        threads.split(work, 10, 2)
    assert blas_threads() == 2
    assert SCHEDULER._single_threaded_blas.acquire(blocking=False)  # free again for the next split
    SCHEDULER._single_threaded_blas.release()


def test_a_part_must_yield_exactly_once():
    def twice(start, stop):
        yield
        yield

    with pytest.raises(RuntimeError, match="yield exactly once"):
        threads.split(twice, 4, 1)


@needs_threadpoolctl
def test_network_pass_holds_blas_to_one_thread_and_splits_with_the_cores_it_had(two_blas_threads):
    assert not SCHEDULER.holding() and threads.alone() == threads.Workers() and threads.alone().count() == 2
    with threads.network_pass(64) as workers:
        assert workers == threads.Workers(2, blas_held=True)  # the cores BLAS had
        assert SCHEDULER.holding() and blas_threads() == 1 and threads.cores() == 1
        with threads.network_pass(64) as inner:  # nested (a network inside a network): the same workers
            assert inner == workers
        assert SCHEDULER.holding() and blas_threads() == 1
    assert not SCHEDULER.holding() and blas_threads() == 2
    with threads.network_pass(1) as workers:  # one image: nothing to split
        assert workers == threads.Workers(2) and not SCHEDULER.holding() and blas_threads() == 2
    with pytest.raises(KeyError), threads.network_pass(64):
        raise KeyError("inside a pass")
    assert not SCHEDULER.holding() and blas_threads() == 2


@needs_threadpoolctl
def test_a_split_in_another_thread_during_a_pass_leaves_blas_alone(two_blas_threads):
    seen = []

    def other():
        seen.extend(threads.split(_recording_work([], lambda a, b: threading.get_ident()), 4, 2))

    with threads.network_pass(64):  # (another thread's pass would get threads.Workers(1): BLAS is at one thread)
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == [thread.ident, thread.ident]  # both parts in order on that thread
    assert blas_threads() == 2


@needs_threadpoolctl
@pytest.mark.parametrize("use_winograd", [True, False], ids=["winograd", "im2col"])
@settings(max_examples=40, deadline=None)
@given(setting=window_settings(depths=st.sampled_from([2, conv_rows.SHALLOW_DEPTH + 1]), batches=st.integers(2, 5)))
def test_conv_split_over_threads_equals_naive(use_winograd, setting):
    rng = np.random.default_rng(setting["seed"])
    N, H, W, D = setting["x_shape"]
    x = rng.standard_normal(setting["x_shape"])
    w = rng.standard_normal((*setting["F"], D, setting["K"]))
    b = rng.standard_normal(setting["K"])
    expected, cache_naive = conv_forward_naive(x, w, b, **setting["hyper"])
    dout = rng.standard_normal(expected.shape)
    splits = []
    original = threads.MIN_PART_MULTIPLY_ADDS, direct.MIN_PART_MULTIPLY_ADDS
    # split even these tiny layers (a hypothesis test cannot take the monkeypatch fixture per example)
    threads.MIN_PART_MULTIPLY_ADDS = direct.MIN_PART_MULTIPLY_ADDS = 1
    SCHEDULER._run = lambda count, *run: splits.append(count) or threads.Scheduler._run(SCHEDULER, count, *run)
    try:
        with SCHEDULER.blas().limit(limits=2), winograd_enabled(use_winograd), threads.network_pass(N) as workers:
            assert workers == threads.Workers(2, blas_held=True)
            out, cache = conv_forward(x, w, b, **setting["hyper"], workers=workers)
            grads = conv_backward(dout, cache, workers=workers)
    finally:
        threads.MIN_PART_MULTIPLY_ADDS, direct.MIN_PART_MULTIPLY_ADDS = original
        del SCHEDULER._run
    assert splits and set(splits) == {2}  # every kernel (forward, dw, dx) split the batch in two
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10)
    for got, want, name in zip(grads, conv_backward_naive(dout, cache_naive), ("dx", "dw", "db")):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=name)


@needs_threadpoolctl
def test_fc_split_over_threads_equals_numpy(rng, two_blas_threads, split_everything):
    x, w, b = rng.standard_normal((7, 3, 2, 4)), rng.standard_normal((24, 5)), rng.standard_normal(5)
    dout = rng.standard_normal((7, 5))
    with threads.network_pass(7) as workers:
        out, cache = dense.fc_forward(x, w, b, workers=workers)
        dx, dw, db = dense.fc_backward(dout, cache, workers=workers)
    flat = x.reshape(7, -1)
    np.testing.assert_allclose(out, flat @ w + b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, (dout @ w.T).reshape(x.shape), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw, flat.T @ dout, rtol=0, atol=1e-12)
    np.testing.assert_allclose(db, dout.sum(axis=0), rtol=0, atol=1e-12)


@needs_threadpoolctl
def test_sequential_runs_forward_and_backward_in_a_network_pass_and_hands_its_workers_to_the_kernels(
        rng, monkeypatch, two_blas_threads):
    net = Sequential([Conv2D(4, 3, P=1), ReLU(), MaxPool(2), FC(3)], (6, 6, 2), dtype=np.float64)
    seen, given = [], []
    monkeypatch.setattr(SCHEDULER, "network_pass", _spy(SCHEDULER.network_pass, seen))
    for name in ("conv_forward", "conv_backward", "relu_forward", "relu_backward", "pool_forward", "pool_backward",
                 "fc_forward", "fc_backward"):
        monkeypatch.setattr(ops, name, _kernel_spy(getattr(ops, name), name, given))
    scores = net.forward(rng.standard_normal((3, 6, 6, 2)), train=True)
    net.backward(np.ones_like(scores))
    assert seen == [(3, False), (3, False)]  # forward and backward each entered one, for the batch of 3
    held = threads.Workers(2, blas_held=True)
    # ReLU fused into the CONV forward and into the POOL's backward; every other kernel, both ways, got the
    # pass's workers
    assert given == [("conv_forward", held), ("pool_forward", held), ("fc_forward", held), ("fc_backward", held),
                     ("pool_backward", held), ("conv_backward", held)]
    assert blas_threads() == 2


def _spy(network_pass, seen):
    def spied(images, split_image=False):
        seen.append((images, split_image))
        return network_pass(images, split_image)
    return spied


def _kernel_spy(kernel, name, given):
    def spied(*args, workers=None, **kwargs):
        given.append((name, workers))
        return kernel(*args, workers=workers, **kwargs)
    return spied


@needs_threadpoolctl
def test_a_kernel_without_workers_holds_the_cores_for_its_own_call(rng, two_blas_threads, split_everything):
    # workers=None: a network pass of the call alone (BLAS on one thread, the batch split), or inside a pass
    # this thread holds, that pass's workers; given workers are taken as they are
    x, w, b = rng.standard_normal((4, 6, 6, 3)), rng.standard_normal((3, 3, 3, 5)), rng.standard_normal(5)
    splits = []
    SCHEDULER._run = lambda count, *run: splits.append(count) or threads.Scheduler._run(SCHEDULER, count, *run)
    try:
        alone, _ = conv_forward(x, w, b, pad=1)
        assert splits == [2] and threads.cores() == 2  # and BLAS given back its two threads
        with threads.network_pass(4):
            inside, _ = conv_forward(x, w, b, pad=1)
        assert splits == [2, 2]
        serial, _ = conv_forward(x, w, b, pad=1, workers=threads.SERIAL)
        assert splits == [2, 2]
    finally:
        del SCHEDULER._run
    np.testing.assert_allclose(alone, serial, rtol=0, atol=1e-12)
    np.testing.assert_allclose(inside, serial, rtol=0, atol=1e-12)


@needs_threadpoolctl
def test_a_pool_replaced_by_a_bigger_one_is_shut_down(two_blas_threads):
    scheduler = threads.Scheduler()
    try:
        assert scheduler.split(_recording_work([], lambda a, b: b - a), 4, 2) == [2, 2]
        small = scheduler._pool
        assert scheduler.split(_recording_work([], lambda a, b: b - a), 6, 3) == [2, 2, 2]
        assert scheduler._pool is not small and small.closed
        assert scheduler.split(_recording_work([], lambda a, b: b - a), 4, 2) == [2, 2]  # big enough: kept
    finally:
        scheduler.close()
    assert scheduler._pool is None


def _split_in_child(queue, parent_pool):
    fresh = SCHEDULER._pool is None  # the parent's threads are not the child's
    queue.put((fresh, threads.split(_recording_work([], lambda a, b: b - a), 6, 2),
               SCHEDULER._pool is not None and id(SCHEDULER._pool) != parent_pool))


@needs_threadpoolctl
def test_a_forked_child_makes_its_own_threads(two_blas_threads):
    threads.split(_recording_work([], lambda a, b: 0), 4, 2)  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_split_in_child, args=(queue, id(SCHEDULER._pool)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and queue.get(timeout=5) == (True, [3, 3], True)


@pytest.mark.slow
def test_without_threadpoolctl_everything_runs_on_one_thread():
    code = ("import sys; sys.modules['threadpoolctl'] = None\n"
            "import numpy as np; from volnet import Sequential; from volnet.layers import Conv2D, FC\n"
            "from volnet.ops import threads; assert threads.threadpoolctl is None and threads.cores() == 1\n"
            "net = Sequential([Conv2D(8, 3, P=1), Conv2D(8, 3, P=1), FC(2)], (6, 6, 3))\n"
            "with threads.network_pass(4) as workers: assert workers == threads.SERIAL\n"
            "scores = net.forward(np.ones((4, 6, 6, 3), np.float32), train=True); net.backward(np.ones_like(scores))\n"
            "print(threads.split(lambda a, b: (yield) or b - a, 5, 2))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["[2,", "3]"]  # the parts, run in order


@needs_threadpoolctl
@settings(max_examples=40, deadline=None)
@given(N=st.integers(2, 5), H=st.integers(3, 9), W=st.integers(3, 9), D=st.integers(1, 3), F=st.integers(2, 3),
       S=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_max_pool_and_relu_split_over_threads_equal_naive(N, H, W, D, F, S, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, D))
    expected, cache_naive = pool_forward_naive(x, F, S, "max", fit="crop")
    dout = rng.standard_normal(expected.shape)
    splits = []
    original = threads.MIN_PART_BYTES
    threads.MIN_PART_BYTES = 1  # split even these tiny batches (no monkeypatch fixture per hypothesis example)
    SCHEDULER._run = lambda count, *run: splits.append(count) or threads.Scheduler._run(SCHEDULER, count, *run)
    try:
        with SCHEDULER.blas().limit(limits=2):
            out, cache = pool_forward(x, F, S, "max", fit="crop")
            dx = pool_backward(dout, cache)
            inference, _ = pool_forward(x, F, S, "max", fit="crop", switches=False)
            rectified, relu_cache = dense.relu_forward(x)
            relu_dx = dense.relu_backward(dout[:, :1, :1], relu_cache[:, :1, :1])
    finally:
        threads.MIN_PART_BYTES = original
        del SCHEDULER._run
    assert splits == [2] * 5  # pool forward, backward, forward without switches, relu forward, backward
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(inference, expected)
    np.testing.assert_allclose(dx, pool_backward_naive(dout, cache_naive), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(rectified, np.maximum(x, 0))
    np.testing.assert_array_equal(relu_dx, dout[:, :1, :1] * (x[:, :1, :1] > 0))


def test_the_examples_in_the_docstrings_hold():
    import doctest

    from volnet import runtime

    assert doctest.testmod(threads).failed == 0
    assert doctest.testmod(runtime).failed == 0


@needs_threadpoolctl
@pytest.mark.parametrize("cores", [1, 2, 3])
def test_blas_is_warmed_once_from_every_core_at_once_on_two_threads_then_given_back(monkeypatch, cores):
    # OpenBLAS runs a one-thread GEMM 3x slower in a work buffer that no GEMM on two threads warmed, and
    # the parts of a split run side by side, each in a buffer of its own: every core's thread warms one
    if not SCHEDULER.blas().lib_controllers:
        pytest.skip("no BLAS that threadpoolctl can see")
    scheduler = threads.Scheduler()
    monkeypatch.setattr(scheduler, "cores", lambda: cores)
    seen, running, overlapped = [], [0], []
    guard = threading.Lock()
    real_matmul = np.matmul

    def spy(a, b):
        with guard:
            running[0] += 1
            seen.append((threading.get_ident(), a.shape, blas_threads()))
        try:
            time.sleep(0.02)  # long enough that the threads' multiplies overlap, as the real ones do
            overlapped.append(running[0])
            return real_matmul(a, b)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(np, "matmul", spy)
    with SCHEDULER.blas().limit(limits=1):  # even where BLAS was set to one thread
        with scheduler.network_pass(8):
            pass
        with scheduler.network_pass(8):
            pass
        assert blas_threads() == 1
    assert len(seen) == cores * blas_warmup.WARM_REPEATS
    assert len({ident for ident, _, _ in seen}) == cores
    assert {(shape, count) for _, shape, count in seen} == {((blas_warmup.WARM_SIZE,) * 2, max(2, cores))}
    assert max(overlapped) == cores


@needs_threadpoolctl
def test_a_warm_up_thread_that_cannot_start_releases_the_others_and_gives_blas_back(monkeypatch):
    if not SCHEDULER.blas().lib_controllers:
        pytest.skip("no BLAS that threadpoolctl can see")
    scheduler = threads.Scheduler()
    monkeypatch.setattr(scheduler, "cores", lambda: 3)
    real_start, starts = threading.Thread.start, []

    def start(thread):
        if thread.name == "volnet-warm-blas" and starts:
            raise RuntimeError("can't start new thread")
        starts.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with SCHEDULER.blas().limit(limits=1):
        with pytest.raises(RuntimeError, match="can't start new thread"):
            scheduler.warm_blas()  # the first thread waits at the barrier: it must be let go, not left hanging
        assert blas_threads() == 1
    assert len(starts) == 1 and not starts[0].is_alive()
