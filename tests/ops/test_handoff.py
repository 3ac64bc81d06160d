"""volnet.ops.handoff: the pools that run the parts of a split give each part's result (or its exception, once
every part has ended) whether their workers were spinning, blocked after spinning, or the caller had to poll for
a long part; closed, their threads end."""

import threading
import time

import numpy as np
import pytest

from volnet.ops import handoff, threads
from volnet.ops.jit import ENABLED

POOLS = [pytest.param(handoff.SpinningPool, marks=pytest.mark.skipif(not ENABLED, reason="Numba is off")),
         handoff.BlockingPool]


@pytest.fixture(params=POOLS, ids=["spinning", "blocking"])
def pool(request):
    made = request.param(2)
    yield made
    made.close(wait=True)
    assert made.closed


def _where(value):
    return lambda: (value, threading.get_ident())


def test_each_part_runs_on_a_worker_thread(pool):
    for round_ in range(20):  # the same workers, part after part
        for worker in range(2):
            pool.run(worker, _where(10 * round_ + worker))
        outcomes = pool.results(2)
        assert [value for value, _ in outcomes] == [10 * round_, 10 * round_ + 1]
        idents = {ident for _, ident in outcomes}
        assert threading.get_ident() not in idents
        if isinstance(pool, handoff.SpinningPool):  # each worker its own thread (the standard pool picks one)
            assert len(idents) == 2


def test_a_part_that_fails_raises_in_the_caller_after_every_part_has_ended(pool):
    ended = []

    def failing():
        raise ValueError("part failed")

    def slow():
        time.sleep(0.01)
        ended.append(True)
        return 1

    pool.run(0, failing)
    pool.run(1, slow)
    with pytest.raises(ValueError, match="part failed"):
        pool.results(2)
    assert ended == [True]
    pool.run(0, _where(3))  # the pool still works
    assert pool.results(1)[0][0] == 3


@pytest.mark.skipif(not ENABLED, reason="Numba is off")
def test_workers_that_stopped_spinning_are_woken_and_long_parts_are_waited_for(monkeypatch):
    monkeypatch.setattr(handoff, "WORKER_SPIN_SECONDS", 1e-6)
    monkeypatch.setattr(handoff, "CALLER_SPIN_SECONDS", 1e-6)  # the caller polls almost at once
    made = handoff.SpinningPool(1)
    try:
        for round_ in range(3):
            deadline = time.monotonic() + 5
            while not made._sleeping[0] and time.monotonic() < deadline:  # it blocks after its 1 us of spinning
                time.sleep(0.001)
            assert made._sleeping[0]
            made.run(0, lambda: time.sleep(0.003) or round_)  # a part longer than the caller's spin
            assert made.results(1) == [round_]
    finally:
        made.close(wait=True)
    assert not any(thread.is_alive() for thread in made._threads)


@pytest.mark.skipif(not ENABLED, reason="Numba is off")
def test_spin_functions_see_a_flag_change_and_store_atomically():
    wait_for, finish_and_wait, _ = handoff.spin_functions()
    flags = np.zeros(16, dtype=np.int64)
    assert wait_for(flags, 8, 0, 1000) == 0  # unchanged: gives the old value back after its looks
    flags[8] = 5
    assert wait_for(flags, 8, 0, 10**9) == 5
    calls = np.zeros(handoff.CALL_SLOTS, dtype=np.int64)  # no compiled calls posted (their ticket is 0)
    assert finish_and_wait(flags, 0, 7, 8, 5, 1000, calls) == 5 and flags[0] == 7


def test_splits_from_two_threads_at_once_each_get_their_own_results():
    scheduler = threads.Scheduler()
    answers, errors = {}, []

    def work(start, stop):
        yield
        time.sleep(0.001)
        return list(range(start, stop))

    def many(name):
        try:
            answers[name] = [scheduler.split(work, 10, 2, blas_held=True) for _ in range(30)]
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    runners = [threading.Thread(target=many, args=(name,)) for name in "ab"]
    try:
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
    finally:
        scheduler.close()
    assert not errors
    expected = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert all(result == expected for results in answers.values() for result in results)


def test_the_pool_spins_only_where_numba_runs_on_x86_64(monkeypatch):
    for machine, enabled, kind in (("x86_64", True, handoff.SpinningPool), ("aarch64", True, handoff.BlockingPool),
                                   ("x86_64", False, handoff.BlockingPool)):
        if kind is handoff.SpinningPool and not ENABLED:
            continue
        monkeypatch.setattr(handoff.platform, "machine", lambda machine=machine: machine)
        monkeypatch.setattr("volnet.ops.jit.ENABLED", enabled)
        made = handoff.pool(1)
        try:
            assert type(made) is kind
        finally:
            made.close(wait=True)
