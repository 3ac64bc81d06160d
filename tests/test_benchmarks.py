"""The benchmark scripts' plumbing (benchmarks/): time budgets, the fresh-process protocol, and report.py's
rendering of new and old results. Nothing here asserts a timing; the scripts themselves run in ``make bench``."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
# make bench's results on AMD EPYC as committed before issue 16 (361c2be): no fresh processes, no net names
OLD_RESULTS = Path(__file__).resolve().parent / "benchmark_results_before_issue_16"


@pytest.fixture(scope="module")
def bench():
    """The scripts' modules, imported as they import each other: with their folder on ``sys.path``."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield SimpleNamespace(**{name: importlib.import_module(name)
                                 for name in ("_common", "report", "bench_ops", "bench_train",
                                              "compare_direct", "compare_pools", "compare_revisions",
                                              "compare_uses")})
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_fit_plan_keeps_what_was_asked_when_it_fits_and_never_goes_below_three_rounds_of_one_call(bench):
    fit_plan = bench._common.fit_plan
    assert fit_plan(call_seconds=0.01, budget=15, rounds=10, calls=3) == (10, 3)  # 10 x 4 x 0.01 s fits
    rounds, calls = fit_plan(call_seconds=0.5, budget=15, rounds=10, calls=3)  # calls are cut first
    assert (rounds, calls) == (10, 2) and rounds * (calls + 1) * 0.5 <= 15
    assert fit_plan(call_seconds=10, budget=15, rounds=10, calls=3) == (3, 1)  # heavier than the budget allows
    assert fit_plan(call_seconds=0.0, budget=15, rounds=2, calls=2) == (2, 2)  # fewer rounds asked: kept


@pytest.mark.slow
@pytest.mark.parametrize(("budget", "expected"), [(1e6, (4, 2)), (0.0, (3, 1))])
def test_compare_within_budget_returns_a_time_for_every_call_it_planned(bench, budget, expected):
    calls_made = []
    fns = {"volnet": lambda: calls_made.append("volnet"), "torch": lambda: calls_made.append("torch")}
    times, rounds, calls = bench._common.compare_within_budget(fns, budget, rounds=4, calls=2)
    assert (rounds, calls) == expected
    assert {name: len(seconds) for name, seconds in times.items()} == {"volnet": rounds * calls,
                                                                      "torch": rounds * calls}
    # every block warms up first (for WARMUP_SECONDS, one call at least), so each library made more calls than it timed
    assert min(calls_made.count("volnet"), calls_made.count("torch")) >= rounds * (calls + 1)


def test_timing_row_names_each_way_and_leaves_a_missing_library_empty(bench):
    row = bench._common.timing_row({"volnet": [0.002, 0.004, 0.003]}, images=3, way="_fresh")
    assert row["volnet_fresh_ms"] == pytest.approx(3.0) and row["volnet_fresh_min_ms"] == pytest.approx(2.0)
    assert row["volnet_fresh_images_per_s"] == pytest.approx(1000.0)
    assert row["torch_fresh_ms"] is None and row["ratio_fresh"] is None


def test_the_targets_name_workloads_and_nets_the_benchmarks_run(bench):
    workloads = {wl.name for wl in bench.bench_ops.WORKLOADS}
    assert {(name, pass_) for name, pass_ in bench.report.TARGETS["bench_ops"]} <= {
        (name, pass_) for name in workloads for pass_ in bench.bench_ops.PASSES}
    assert set(bench.report.NETS) == set(bench.bench_train.NETS)
    assert {net for net, _ in bench.report.TARGETS["bench_infer"]} == set(bench.bench_train.NETS)


def test_every_conv_workload_floors_as_torch_does(bench):
    """A stride that does not tile its input must be cropped (fit="crop"), or the output sizes would differ."""
    from volnet.shapes import conv_output_size

    for wl in bench.bench_ops.WORKLOADS:
        if wl.is_conv:
            torch_size = (wl.H + 2 * wl.P - wl.F) // wl.S + 1
            assert conv_output_size(wl.H, wl.F, wl.S, wl.P, fit=wl.fit) == torch_size, wl.name


def new_results(bench, folder: Path) -> None:
    """A record of every benchmark in the current format, a row for every target, written by ``Results``."""
    common = bench._common
    times = {"volnet": [0.009, 0.010], "torch": [0.010, 0.011]}

    def timings(images=None):
        return {"rounds": 3, "calls": 1, **common.timing_row(times, images),
                **common.timing_row(times, images, way="_fresh")}

    view = {"numpy": "2", "blas": {"architecture": "Haswell", "num_threads": 2}, "torch": None,
            "torch_threads": None, "torch_loaded": False, "volnet_settings": {"keep_freed_memory": True}}
    method = {"rounds": 10, "calls": 3, "budget_s": 15.0, "fresh": True}
    ops_rows = [{"workload": wl.name, "batch": wl.N, "pass": pass_, "gemm_percent": 70.0, **timings()}
                for wl in bench.bench_ops.WORKLOADS for pass_ in bench.bench_ops.PASSES]
    common.Results("bench_ops").write({**method, "quick": False}, ops_rows, gemm={"size": 2048, "gflops": 70.0},
                                      fresh_processes={"volnet": view})
    common.Results("bench_train").write(method, [{"net": net, "batch": batch, **timings(batch)}
                                                 for net, batch in bench.bench_train.NETS.items()])
    infer_rows = [{"net": net, "batch": batch, "ort_images_per_s": 100.0, "ratio_ort": 1.5, **timings(batch)}
                  for net in bench.bench_train.NETS for batch in (1, 256)]
    common.Results("bench_infer").write(method, infer_rows, layers_with_cache=0)
    memory_rows = [{"mode": mode, "batch": 64, "measured_bytes": 2**20, "estimate_bytes": 2**20, "ratio": 1.0}
                   for mode in ("train", "inference")]
    common.Results("bench_memory").write({}, memory_rows)


def test_report_lists_every_target_for_new_results_and_old_ones(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(bench._common.RESULTS_VARIABLE, str(tmp_path))
    shutil.copytree(OLD_RESULTS, tmp_path / "old-format")
    new_results(bench, tmp_path)
    new_kind = bench._common.machine_kind()
    bench.report.main()
    lines = capsys.readouterr().out.splitlines()

    header = next(line for line in lines if line.startswith("| workload | target |"))
    kinds = [name.strip() for name in header.strip("|").split("|")[2:]]
    assert sorted(kinds) == sorted([new_kind, "old-format"])
    start = lines.index(header) + 2
    side_by_side = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line
                    for line in lines[start:lines.index("", start)]}
    targets = bench.report.TARGETS
    for name, rows in targets.items():
        for key, bounds in rows.items():
            for column, op, bound in bounds:
                target = (bench.report.target_label(name, key), f"{column.replace('_', ' ')} {op} {bound}")
                cells = dict(zip(kinds, (c.strip() for c in side_by_side[target].strip("|").split("|")[2:])))
                assert cells[new_kind] != "-", target  # every target has its figure in the new results
                if column == "ratio_fresh" and name != "bench_memory":
                    assert cells["old-format"] == "-", target  # old results never ran fresh processes
    assert side_by_side["train cifar-ref", "ratio <= 1.0"].split("|")[3].strip() != "-"  # old rows: cifar-ref
    assert sum(len(bounds) for rows in targets.values() for bounds in rows.values()) == len(side_by_side)
    assert any(line.startswith("Fresh volnet processes:") for line in lines)


@pytest.mark.slow
def test_a_fresh_volnet_process_times_volnet_alone_without_torch(bench):
    run = bench._common.time_in_fresh_process("bench_infer", "volnet", ["--nets", "lenet", "--batches", 1], calls=2)
    assert len(run["seconds"]) == 2 and all(seconds > 0 for seconds in run["seconds"])
    assert run["process"]["torch_loaded"] is False


@pytest.mark.slow
def test_a_fresh_torch_process_leaves_volnet_settings_off_and_matches_numpys_threads(bench):
    pytest.importorskip("torch")
    run = bench._common.time_in_fresh_process("bench_infer", "torch", ["--nets", "lenet", "--batches", 1], calls=1)
    view = run["process"]
    assert len(run["seconds"]) == 1
    assert view["torch_loaded"] and not any(view["volnet_settings"].values())
    assert view["torch_threads"] == view["blas"]["num_threads"]


def test_the_per_layer_breakdown_takes_a_training_step_apart(bench):
    """bench_train's layer-by-layer timing calls every layer as a network pass does (its ``workers`` keyword):
    one row per layer, each part timed, and the weights moved as one momentum step moves them."""
    import numpy as np

    from volnet.spec import build

    net = build("INPUT[8x8x1] -> CONV3-2 -> RELU -> POOL2 -> FC3", seed=0)
    before = net.layers[0].weight.copy()
    rng = np.random.default_rng(0)
    rows = bench.bench_train.layer_breakdown(net, rng.random((4, 8, 8, 1), dtype=np.float32), np.arange(4) % 3, 1)
    assert [row["index"] for row in rows] == [1, 2, 3, 4, None, None]
    assert all(row["fwd_ms"] >= 0 and row["bwd_ms"] >= 0 for row in rows)
    assert not np.array_equal(net.layers[0].weight, before)


def test_each_block_warms_up_for_the_warm_up_time_before_its_timed_calls(bench):
    """The pause lets a core fall asleep; the warm-up wakes it before anything is timed (benchmarks/_common.py)."""
    import time

    stamps = []
    times = bench._common.compare_interleaved({"f": lambda: stamps.append(time.perf_counter())}, rounds=1, calls=2)
    assert len(times["f"]) == 2 and len(stamps) > 3
    assert stamps[-2] - stamps[0] >= bench._common.WARMUP_SECONDS - 1e-3  # the first timed call after the warm-up


def test_compare_pools_runs_each_split_on_the_pool_it_measures(bench):
    from volnet.ops import handoff, threads

    scheduler, pool = threads.scheduler(), handoff.BlockingPool(1)
    before = scheduler._pool, scheduler._pool_size
    ran_on = []
    original = pool.run
    pool.run = lambda worker, task: ran_on.append(worker) or original(worker, task)
    try:
        bench.compare_pools.on_pool(pool, bench.compare_pools.empty_split())()
        assert scheduler._pool is pool and ran_on == [0]
    finally:
        scheduler._pool, scheduler._pool_size = before
        pool.close(wait=True)


def test_compare_revisions_times_any_net_of_the_targets_on_both_versions(bench):
    """--nets: each net's training step at its target batch and its inference at batches 1 and 256, one
    callable per version (here the same package twice), each of which runs."""
    import numpy as np

    import volnet

    cases = bench.compare_revisions.net_cases(volnet, volnet, "lenet", 4, np.random.default_rng(0))
    assert list(cases) == ["lenet training step, batch 4", "lenet inference, batch 1", "lenet inference, batch 256"]
    for new, old in cases.values():
        new(), old()
    scores = cases["lenet inference, batch 256"][0]()
    assert scores.shape == (256, 10) and np.isfinite(scores).all()


def _planned_forward(shape=(8, 28, 28, 1), F=5, K=16):
    """The forward algorithm the plan gives LeNet's first layer now (a first layer: direct where that use runs)."""
    import numpy as np

    from volnet.ops import conv_plan
    from volnet.ops.window import geometry

    return conv_plan.plan_conv(geometry(shape, F, 1, F // 2), K, np.float32).forward


def test_compare_direct_switches_the_plan_not_only_the_flag(bench):
    """Layers remember their plans: the side without the direct kernels must not run the plan remembered with them
    (it did, until the memos were forgotten at each switch)."""
    from volnet.ops import direct

    if not direct.measured_here("first"):
        pytest.skip("the direct kernels do not run first layers on this host")
    seen = []
    assert _planned_forward() == "direct"
    bench.compare_direct.without_direct(lambda: seen.append(_planned_forward()))()
    assert seen == ["im2col"] and _planned_forward() == "direct"


def test_compare_uses_plans_each_way_and_restores_the_measured_uses(bench):
    from volnet.ops import direct, tiled

    if not direct.ENABLED:
        pytest.skip("Numba not installed, or VOLNET_NUMBA=0")
    before = direct.MEASURED
    ways = bench.compare_uses.ways()
    assert ways["none"] == () and ways["every"] == direct.USES
    assert ways["measured"] == tuple(direct.MEASURED.get(tiled.isa(), ()))
    with bench.compare_uses.planned(()):
        assert _planned_forward() == "im2col"
    with bench.compare_uses.planned(("first",)):
        assert _planned_forward() == "direct"
    assert direct.MEASURED is before
    [(label, make)] = bench.compare_uses.passes("lenet", [2], None)
    times = bench.compare_uses.in_turn(make, rounds=1, calls=1)
    assert label == "infer batch 2" and {way: len(t) for way, t in times.items()} == {
        "none": 1, "measured": 1, "every": 1}
