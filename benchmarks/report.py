"""Print docs/performance.md's section on speed and memory (Markdown) from the benchmarks' JSON results.

Run from the repository root after the benchmarks (``make bench`` runs it last):

    .venv/bin/python benchmarks/report.py

It reads ``benchmarks/results/<machine kind>/*.json`` (what bench_ops.py,
bench_train.py, bench_infer.py and bench_memory.py write, one folder per
kind of machine they ran on; ``VOLNET_BENCH_RESULTS`` names another folder
than ``benchmarks/results``) and prints every target's figure on each kind
side by side, then, per kind, the machine, the command that reproduces the
figures, and one table per benchmark with columns saying whether its targets
(:data:`TARGETS`) are met. A bound on volnet time / torch time is two
targets: with the libraries taking turns in one process (``ratio``) and
with each alone in a fresh process (``ratio_fresh``; see ``_common``).
Results written before issue 16 (no fresh processes, no net names: those
rows are the CIFAR-10 reference net's) show "-" for what they lack.
"""

from __future__ import annotations

import json
import sys

from volnet.analysis import format_bytes

from _common import cell, process_summary, results_folder  # this folder's shared helpers


def both_ways(bound: float) -> list:
    """A bound on volnet time / torch time, for the libraries taking turns in one process ("ratio") and for
    each alone in a fresh process ("ratio_fresh")."""
    return [("ratio", "<=", bound), ("ratio_fresh", "<=", bound)]


GEMM_TARGET = ("gemm_percent", ">=", 60)  # volnet's forward GFLOP/s, in % of NumPy's own float32 GEMM
# Issue 16: every CONV of lenet, alexnet-cifar, resnet18-cifar and googlenet-cifar at its size there, and the
# ImageNet first layers of resnet18 and alexnet (bench_ops.WORKLOADS).
ZOO_CONVS = ("conv5 28x28x1->16", "conv5 14x14x16->32", "conv5 32x32x3->64", "conv5 16x16x64->192",
             "conv3x3 8x8x192->384", "conv3x3 32x32x64->64", "conv3x3/2 32x32x64->128", "conv1x1/2 32x32x64->128",
             "conv3x3 4x4x512->512", "conv1x1 32x32x192->64", "conv7/2 224x224x3->64", "conv11/4 224x224x3->64")
NETS = ("cifar-ref", "lenet", "resnet18-cifar", "alexnet-cifar")  # bench_train.NETS

# The targets of issues 6 and 16: benchmark -> row -> [(column, "<=" or ">=", bound)]. Rows are named by
# :data:`ROW_KEYS`; "ratio" is volnet time / torch time (with the libraries taking turns in one process,
# "ratio_fresh" with each alone in a fresh one), except in the memory table, where it is the measured peak
# over volnet.analysis' estimate.
TARGETS = {
    "bench_ops": {
        ("conv3x3 32x32x3->32", "fwd+bwd"): both_ways(1.5),
        ("conv3x3 32x32x32->32", "fwd+bwd"): both_ways(1.0),
        ("conv3x3 32x32x32->32", "fwd"): [GEMM_TARGET],
        ("conv3x3 16x16x64->64", "fwd+bwd"): both_ways(1.0),
        ("conv3x3 16x16x64->64", "fwd"): [GEMM_TARGET],
        ("conv3x3 8x8x128->128", "fwd+bwd"): both_ways(1.0),
        **{key: targets for name in ZOO_CONVS
           for key, targets in (((name, "fwd+bwd"), both_ways(1.0)), ((name, "fwd"), [GEMM_TARGET]))},
        ("maxpool2/2 32x32x64", "fwd+bwd"): both_ways(1.0),
        ("maxpool3/2 55x55x96", "fwd+bwd"): both_ways(0.8),  # issue 23 (1.0 before)
    },
    # issue 23: LeNet's step 0.9 (1.0 before)
    "bench_train": {net: both_ways(0.9 if net == "lenet" else 1.0) for net in NETS},
    # issue 23 adds onnxruntime ("ratio_ort", volnet time / onnxruntime time, taking turns): 1.0 at batch 256,
    # 2.0 at batch 1
    "bench_infer": {(net, batch): both_ways(1.0) + [("ratio_ort", "<=", 1.0 if batch > 1 else 2.0)]
                    for net in NETS for batch in (1, 256)},
    "bench_memory": {"train": [("ratio", "<=", 1.3)], "inference": [("ratio", "<=", 1.3)]},
}
PEER_COLUMNS = ("ratio_ort",)  # targets against onnxruntime, judged in bench_infer's onnxruntime table
OLD_NET = "cifar-ref"  # the only net of bench_train's and bench_infer's rows before issue 16, which name none
ROW_KEYS = {
    "bench_ops": lambda row: (row["workload"], row["pass"]),
    "bench_train": lambda row: row.get("net", OLD_NET),
    "bench_infer": lambda row: (row.get("net", OLD_NET), row["batch"]),
    "bench_memory": lambda row: row["mode"],
}


def target_label(name: str, key) -> str:
    """A target's row in the side-by-side table: "conv5 28x28x1->16 fwd+bwd", "train lenet",
    "infer lenet, batch 1", "memory train"."""
    if name == "bench_ops":
        return " ".join(key)
    if name == "bench_infer":
        return f"infer {key[0]}, batch {key[1]}"
    return f"{name.removeprefix('bench_')} {key}"


def load() -> dict:
    """``{machine kind: {script name: record}}`` of every JSON file in <results folder>/<machine kind>/
    (``_common.results_folder``)."""
    folders = sorted(results_folder().iterdir()) if results_folder().is_dir() else []
    kinds = {folder.name: {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
             for folder in folders if folder.is_dir()}
    return {kind: results for kind, results in kinds.items() if results}


def figure(column: str, value) -> str:
    """A target's figure as the tables show it: "0.97", "71%", "-" where the row lacks it."""
    if value is None:
        return "-"
    return f"{value:.0f}%" if column == "gemm_percent" else f"{value:.2f}"


def met(value: float, op: str, bound: float) -> bool:
    return value <= bound if op == "<=" else value >= bound


def side_by_side(kinds: dict) -> list:
    """One row per target, one column per machine kind: the figure and whether it meets the target."""
    rows = []
    for name, targets in TARGETS.items():
        for key, bounds in targets.items():
            for column, op, bound in bounds:
                cells = []
                for results in kinds.values():
                    row = next((r for r in results.get(name, {}).get("rows", []) if ROW_KEYS[name](r) == key), {})
                    value = row.get(column)
                    missed = value is not None and not met(value, op, bound)
                    cells.append(figure(column, value) + (" (missed)" if missed else ""))
                rows.append((target_label(name, key), f"{column.replace('_', ' ')} {op} {bound}", *cells))
    return table(["workload", "target", *kinds], rows)


def verdict(name: str, row: dict, tally: list, fresh: bool = False, peer: bool = False) -> str:
    """A "target met" cell of one row, for the targets on the fresh-process ratio (``fresh``), on the ratio to
    onnxruntime (``peer``, :data:`PEER_COLUMNS`) or on the others: "yes (<= 1.0)", "no (>= 60%)", "- (<= 1.0)"
    without a number, "" without a target.

    Appends True or False to ``tally`` for every target that has a number.
    """
    cells = []
    for column, op, bound in TARGETS[name].get(ROW_KEYS[name](row), []):
        if column.endswith("_fresh") != fresh or (column in PEER_COLUMNS) != peer:
            continue
        bound_text = f"{op} {bound}{'%' if column == 'gemm_percent' else ''}"
        if row.get(column) is None:
            cells.append(f"- ({bound_text})")
            continue
        tally.append(met(row[column], op, bound))
        cells.append(f"{'yes' if tally[-1] else 'no'} ({bound_text})")
    return ", ".join(cells)


def table(header: list, rows: list) -> list:
    """Markdown table lines: text columns left-aligned, numbers right-aligned."""
    text = ("workload", "pass", "net", "mode", "target", "target met", "target met (fresh)")
    align = ["---" if h in text else "---:" for h in header]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + [
        "| " + " | ".join(map(str, r)) + " |" for r in rows]


def machine_lines(results: dict) -> list:
    """One line per distinct machine and software setup (normally one), with the dates and load it ran at;
    then one per distinct view of the fresh processes the comparisons started."""
    setups = {}
    for record in results.values():
        m, b, v = record["machine"], record["blas"], record["versions"]
        memory = f", {m['memory_bytes'] / 2**30:.1f} GiB" if m.get("memory_bytes") else ""
        unset = not any(record["openblas_variables_set"].values())
        onnxruntime = f"; onnxruntime {v['onnxruntime']}" if v.get("onnxruntime") else ""
        line = (f"{m['cpu']}, {m['cores']} cores{memory}; NumPy {v['numpy']} with {b['internal_api']} "
                f"{b['version']} ({b['architecture']} kernel, {b['num_threads']} threads); "
                f"torch {v['torch'] or 'not installed'}{onnxruntime}; "
                f"Python {v['python']}; OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE "
                f"{'unset' if unset else 'SET (slows NumPy BLAS)'}")
        setups.setdefault(line, []).append(record)
    lines = []
    for line, records in setups.items():
        dates = sorted({r["timestamp"][:10] for r in records})
        loads = [load for r in records for load in (r["load_average"]["start"][0], r["load_average"]["end"][0])]
        lines.append(f"Measured {' to '.join([dates[0], dates[-1]] if len(dates) > 1 else dates)} (UTC) on "
                     f"{line}; 1-minute load average {min(loads):.1f}-{max(loads):.1f}.")
    views = {f"Fresh {library} processes: {process_summary(view)}." for record in results.values()
             for library, view in record.get("fresh_processes", {}).items()}
    return lines + sorted(views)


def timing_text(method: dict, calls: str, call: str) -> str:
    """How a record's times were taken, in a sentence; ``calls`` and ``call`` name what was timed ("steps",
    "step"). Records from before issue 16 ran fixed rounds x calls in one process; later ones cut them per
    row to a time budget (the "rounds x calls" column) and also time each library in a fresh process."""
    warm_up = (f"{method['warmup_s']:g} s of warm-up {calls}" if "warmup_s" in method else f"a warm-up {call}")
    taking_turns = (f"median of {method['rounds']} rounds x {method['calls']} {calls} per library, each round "
                    f"after {warm_up}")
    if "budget_s" not in method:
        return taking_turns[0].upper() + taking_turns[1:] + "."
    fresh = (f" Fresh: each library alone in a new process (without the other's settings), a warm-up {call}, then "
             f"as many {calls}, median." if method.get("fresh") else " No fresh-process comparison in this run.")
    return (f"In turn: the libraries take turns in one process, {taking_turns.replace('median of', 'median of up to')}"
            f" (fewer for a heavy case, to take about {method['budget_s']:g} s: the rounds x calls column).{fresh}")


def rounds_calls(row: dict, method: dict) -> str:
    """The rounds x calls a row ran (a run's own before issue 16)."""
    return f"{row.get('rounds', method['rounds'])} x {row.get('calls', method['calls'])}"


def ops_section(record: dict, tally: list) -> list:
    method = record["method"]
    lines = ["### Kernels: `benchmarks/bench_ops.py`", "",
             f"float32. {timing_text(method, 'calls', 'call')} FLOPs = 2 x the multiply-adds of the direct "
             f"convolution; NumPy's own float32 GEMM {record['gemm']['size']}^3: {record['gemm']['gflops']:.1f} "
             "GFLOP/s. The 3x3 stride-1 layers with at least 8 input channels run Winograd (F(2x2, 3x3), 2.25x "
             "fewer multiply-adds; since issue 23, F(4x4, 3x3), 4x fewer, where the batch has enough of its tiles), "
             "and the 5x5 ones with at least 16 F(4x4, 5x5) (6.25x fewer), so their GFLOP/s (and % of GEMM) are "
             "effective rates and can pass 100%. The plan names each CONV's forward/dw/dx algorithms "
             "(`volnet.ops.conv.plan_conv`) and each pool's kernels, where the results record them.", ""]
    if method.get("quick"):
        lines += ["**A `--quick` run (batches 8x smaller): not comparable with the targets.**", ""]
    lines += table(["workload", "pass", "volnet plan", "volnet ms", "torch ms", "volnet/torch", "volnet % of GEMM",
                    "fresh volnet ms", "fresh torch ms", "fresh volnet/torch", "rounds x calls", "target met",
                    "target met (fresh)"], [
        (f"{r['workload']}, N={r['batch']}", r["pass"], r.get("plan", "-"), cell(r["volnet_ms"], ".2f"),
         cell(r["torch_ms"], ".2f"),
         cell(r["ratio"], ".2f"), cell(r["gemm_percent"], ".0f"), cell(r.get("volnet_fresh_ms"), ".2f"),
         cell(r.get("torch_fresh_ms"), ".2f"), cell(r.get("ratio_fresh"), ".2f"), rounds_calls(r, method),
         verdict("bench_ops", r, tally), verdict("bench_ops", r, tally, fresh=True))
        for r in record["rows"]])
    return lines


def images_per_second(name: str, record: dict, tally: list) -> list:
    """The table of a benchmark that reports images/s per net and batch (training step, inference)."""
    return table(["net", "batch", "volnet images/s", "torch images/s", "volnet/torch", "fresh volnet images/s",
                  "fresh torch images/s", "fresh volnet/torch", "rounds x calls", "target met",
                  "target met (fresh)"], [
        (r.get("net", OLD_NET), r["batch"], cell(r["volnet_images_per_s"], ".1f"), cell(r["torch_images_per_s"], ".1f"),
         cell(r["ratio"], ".2f"), cell(r.get("volnet_fresh_images_per_s"), ".1f"),
         cell(r.get("torch_fresh_images_per_s"), ".1f"), cell(r.get("ratio_fresh"), ".2f"),
         rounds_calls(r, record["method"]), verdict(name, r, tally), verdict(name, r, tally, fresh=True))
        for r in record["rows"]])


def train_section(record: dict, tally: list) -> list:
    return ["### Training step: `benchmarks/bench_train.py`", "",
            "The zoo's nets (`volnet.zoo.build_named(name, seed=0)`, 10 classes), each at the batch of its target: "
            "forward, softmax loss, backward, momentum update. "
            f"{timing_text(record['method'], 'steps', 'step')}", "",
            *images_per_second("bench_train", record, tally)]


def infer_section(record: dict, tally: list) -> list:
    lines = ["### Inference: `benchmarks/bench_infer.py`", "",
             "The zoo's nets' forward pass (torch: eval mode, `inference_mode`). "
             f"{timing_text(record['method'], 'passes', 'pass')} "
             f"Layers left holding a forward cache: {record['layers_with_cache']}.", ""]
    lines += images_per_second("bench_infer", record, tally)
    peers = [r for r in record["rows"] if r.get("ort_images_per_s") is not None]
    if peers:  # onnxruntime, running volnet's own ONNX export of the same net, as a second peer
        lines += ["", "The same nets exported with `volnet.export.to_onnx`, in onnxruntime (CPU), taking turns "
                  "with volnet in one process:", "",
                  *table(["net", "batch", "volnet images/s", "onnxruntime images/s", "volnet/onnxruntime",
                          "target met"], [
                      (r.get("net", OLD_NET), r["batch"], cell(r["volnet_images_per_s"], ".1f"),
                       cell(r["ort_images_per_s"], ".1f"), cell(r["ratio_ort"], ".2f"),
                       verdict("bench_infer", r, tally, peer=True)) for r in peers])]
    return lines


def memory_section(record: dict, tally: list) -> list:
    lines = ["### Memory: `benchmarks/bench_memory.py`", "",
             "`cifar_reference`, float32, momentum SGD: peak traced by tracemalloc (weights, gradients, optimizer "
             "state and batch included) against `volnet.analysis.analyze`'s estimate.", ""]
    return lines + table(["mode", "batch", "measured", "estimate", "measured/estimate", "target met"], [
        (r["mode"], r["batch"], format_bytes(r["measured_bytes"]), format_bytes(r["estimate_bytes"]),
         f"{r['ratio']:.2f}", verdict("bench_memory", r, tally)) for r in record["rows"]])


SECTIONS = {"bench_ops": ops_section, "bench_train": train_section, "bench_infer": infer_section,
            "bench_memory": memory_section}


def kind_lines(kind: str, results: dict) -> list:
    """The section of one machine kind: its machine, how to reproduce, one table per benchmark."""
    tally = []
    lines = [f"### {kind}", ""]
    for line in machine_lines(results):
        lines += [line, ""]
    for name, section in SECTIONS.items():
        if name in results:
            body = section(results[name], tally)
            lines += [f"#{body[0]}", *body[1:]]  # each benchmark's heading one level down
        else:
            lines.append(f"*No `{name}.json` yet: run `benchmarks/{name}.py`.*")
        lines.append("")
    lines.append(f"Targets met on {kind}: {sum(tally)} of {len(tally)}.")
    return lines


def main() -> None:
    kinds = load()
    if not kinds:
        sys.exit(f"no results in {results_folder()}/<machine kind>/: run `make bench` first")
    lines = ["## Speed and memory", "",
             "Reproduce with `make bench` on each kind of machine (it writes `benchmarks/results/<machine kind>/"
             "*.json`; `benchmarks/report.py` prints this section from them). Every target, on every machine kind "
             "measured so far; a ratio is volnet's time over torch's with the two taking turns in one process, "
             "a fresh ratio with each alone in a new process, as a user runs it; a ratio ort is volnet's time over "
             "onnxruntime's on volnet's own ONNX export, taking turns:", "", *side_by_side(kinds), ""]
    for kind, results in kinds.items():
        lines += [*kind_lines(kind, results), ""]
    print("\n".join(lines).rstrip())


if __name__ == "__main__":
    main()
