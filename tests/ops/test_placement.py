"""volnet.ops.placement: the parts of a split run on distinct CPUs, the caller held on its own CPU only for the
split's length (its mask given back, also when a part fails); nothing is pinned where the caller may use one CPU."""

import os
import threading

import pytest

from volnet.ops import placement, threads

pinning = pytest.mark.skipif(
    placement._sched_getcpu() is None or len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2,
    reason="needs CPU affinity (Linux with glibc) and at least 2 CPUs")
needs_threadpoolctl = pytest.mark.skipif(threads.threadpoolctl is None, reason="threadpoolctl is not installed")


def cpu_now() -> int:
    return placement._sched_getcpu()()


def in_own_thread(function):
    """``function()`` run on a new thread (whose CPU mask a test may change without touching the test
    runner's), its result or error passed back."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pinning
def test_pinned_holds_the_caller_where_it_is_and_names_other_cpus_for_the_other_parts():
    mask = os.sched_getaffinity(0)
    with placement.Placement().pinned(3) as cpus:
        here = cpu_now()
        assert os.sched_getaffinity(0) == {here}
        assert len(cpus) == 2 and here not in cpus and set(cpus) <= mask
        assert len(set(cpus)) == min(2, len(mask) - 1)  # distinct while the mask has CPUs enough
    assert os.sched_getaffinity(0) == mask


@pinning
def test_the_callers_mask_comes_back_when_the_block_fails():
    mask = os.sched_getaffinity(0)
    with pytest.raises(ValueError, match="inside"):
        with placement.Placement().pinned(2):
            raise ValueError("inside")
    assert os.sched_getaffinity(0) == mask


@pinning
@needs_threadpoolctl
@pytest.mark.parametrize("failing", [None, 0, 5], ids=["no part fails", "this thread's part", "the other part"])
def test_the_parts_of_a_split_run_side_by_side_on_distinct_cpus(failing):
    mask = os.sched_getaffinity(0)

    def work(start, stop):
        yield
        cpu = (cpu_now(), os.sched_getaffinity(0))
        if start == failing:
            raise ValueError("part failed")
        return cpu

    if failing is not None:
        with pytest.raises(ValueError, match="part failed"):
            threads.split(work, 10, 2)
    else:
        (first, first_mask), (second, second_mask) = threads.split(work, 10, 2)
        assert first != second and first_mask == {first} and second_mask == {second}
    assert os.sched_getaffinity(0) == mask


@pinning
@needs_threadpoolctl
def test_a_caller_that_may_use_one_cpu_pins_nothing():
    def split_on_one_cpu():
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        with placement.Placement().pinned(2) as cpus:
            assert cpus == [None]
        work_masks = threads.split(lambda start, stop: (yield) or os.sched_getaffinity(0), 4, 2)
        return cpu, work_masks, os.sched_getaffinity(0)

    cpu, work_masks, mask_after = in_own_thread(split_on_one_cpu)
    assert work_masks[0] == mask_after == {cpu}  # the caller's part ran under its own mask, left as it was


def test_without_cpu_affinity_nothing_is_pinned(monkeypatch):
    monkeypatch.setattr(placement, "_sched_getcpu", lambda: None)
    mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with placement.Placement().pinned(3) as cpus:
        assert cpus == [None, None]
        assert mask is None or os.sched_getaffinity(0) == mask


@pinning
def test_a_worker_is_held_on_its_cpu_and_left_where_it_is_for_none():
    target = max(os.sched_getaffinity(0))

    def hold():
        where = placement.Placement()
        where.hold(None)
        untouched = os.sched_getaffinity(0)
        where.hold(target)
        return untouched, os.sched_getaffinity(0), cpu_now()

    untouched, held, cpu = in_own_thread(hold)
    assert len(untouched) >= 2 and held == {target} and cpu == target
