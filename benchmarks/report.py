"""Print docs/performance.md's section on speed and memory (Markdown) from the benchmarks' JSON results.

Run from the repository root after the benchmarks (``make bench`` runs it last):

    .venv/bin/python benchmarks/report.py

It reads ``benchmarks/results/<machine kind>/*.json`` (what bench_ops.py,
bench_train.py, bench_infer.py and bench_memory.py write, one folder per
kind of machine they ran on) and prints every target's figure on each kind
side by side, then, per kind, the machine, the command that reproduces the
figures, and one table per benchmark with a column saying whether its target
(:data:`TARGETS`) is met.
"""

from __future__ import annotations

import json
import sys

from volnet.analysis import format_bytes

from _common import RESULTS, cell  # this folder's shared helpers

# Issue 6's targets: benchmark -> row -> (column, "<=" or ">=", bound). Rows are
# named by :data:`ROW_KEYS`; "ratio" is volnet time / torch time, except in the
# memory table, where it is the measured peak over volnet.analysis' estimate.
TARGETS = {
    "bench_ops": {
        ("conv3x3 32x32x3->32", "fwd+bwd"): ("ratio", "<=", 1.5),
        ("conv3x3 32x32x32->32", "fwd+bwd"): ("ratio", "<=", 1.0),
        ("conv3x3 16x16x64->64", "fwd+bwd"): ("ratio", "<=", 1.0),
        ("conv3x3 8x8x128->128", "fwd+bwd"): ("ratio", "<=", 1.0),
        ("maxpool2/2 32x32x64", "fwd+bwd"): ("ratio", "<=", 1.0),
        ("maxpool3/2 55x55x96", "fwd+bwd"): ("ratio", "<=", 1.0),
        ("conv3x3 32x32x32->32", "fwd"): ("gemm_percent", ">=", 60),
        ("conv3x3 16x16x64->64", "fwd"): ("gemm_percent", ">=", 60),
    },
    "bench_train": {"step": ("ratio", "<=", 1.0)},
    "bench_infer": {1: ("ratio", "<=", 1.0), 256: ("ratio", "<=", 1.0)},
    "bench_memory": {"train": ("ratio", "<=", 1.3), "inference": ("ratio", "<=", 1.3)},
}
ROW_KEYS = {
    "bench_ops": lambda row: (row["workload"], row["pass"]),
    "bench_train": lambda row: "step",
    "bench_infer": lambda row: row["batch"],
    "bench_memory": lambda row: row["mode"],
}


def load() -> dict:
    """``{machine kind: {script name: record}}`` of every JSON file in benchmarks/results/<machine kind>/."""
    kinds = {folder.name: {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
             for folder in sorted(RESULTS.iterdir()) if folder.is_dir()}
    return {kind: results for kind, results in kinds.items() if results}


def side_by_side(kinds: dict) -> list:
    """One row per target, one column per machine kind: the figure and whether it meets the target."""
    rows = []
    for name, targets in TARGETS.items():
        for key, (column, op, bound) in targets.items():
            label = " ".join(map(str, key)) if isinstance(key, tuple) else f"{name.removeprefix('bench_')} {key}"
            cells = []
            for results in kinds.values():
                row = next((r for r in results.get(name, {}).get("rows", []) if ROW_KEYS[name](r) == key), None)
                value = None if row is None else row.get(column)
                if value is None:
                    cells.append("-")
                else:
                    met = value <= bound if op == "<=" else value >= bound
                    cells.append(f"{value:.2f}" if column != "gemm_percent" else f"{value:.0f}%")
                    cells[-1] += "" if met else " (missed)"
            rows.append((label, f"{column.replace('_', ' ')} {op} {bound}", *cells))
    return table(["workload", "target", *kinds], rows)


def verdict(name: str, row: dict, tally: list) -> str:
    """The target column of one row: "yes (<= 1.0)", "no (>= 60%)", "-" without a number, "" without a target.

    Appends True or False to ``tally`` for every row that has a target and a number.
    """
    target = TARGETS[name].get(ROW_KEYS[name](row))
    if target is None:
        return ""
    column, op, bound = target
    bound_text = f"{op} {bound}{'%' if column == 'gemm_percent' else ''}"
    if row.get(column) is None:
        return f"- ({bound_text})"
    met = row[column] <= bound if op == "<=" else row[column] >= bound
    tally.append(met)
    return f"{'yes' if met else 'no'} ({bound_text})"


def table(header: list, rows: list) -> list:
    """Markdown table lines: text columns left-aligned, numbers right-aligned."""
    align = ["---" if h in ("workload", "pass", "mode", "target met", "target") else "---:" for h in header]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + [
        "| " + " | ".join(map(str, r)) + " |" for r in rows]


def machine_lines(results: dict) -> list:
    """One line per distinct machine and software setup (normally one), with the dates and load it ran at."""
    setups = {}
    for record in results.values():
        m, b, v = record["machine"], record["blas"], record["versions"]
        memory = f", {m['memory_bytes'] / 2**30:.1f} GiB" if m.get("memory_bytes") else ""
        unset = not any(record["openblas_variables_set"].values())
        line = (f"{m['cpu']}, {m['cores']} cores{memory}; NumPy {v['numpy']} with {b['internal_api']} "
                f"{b['version']} ({b['architecture']} kernel, {b['num_threads']} threads); "
                f"torch {v['torch'] or 'not installed'}; "
                f"Python {v['python']}; OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE "
                f"{'unset' if unset else 'SET (slows NumPy BLAS)'}")
        setups.setdefault(line, []).append(record)
    lines = []
    for line, records in setups.items():
        dates = sorted({r["timestamp"][:10] for r in records})
        loads = [load for r in records for load in (r["load_average"]["start"][0], r["load_average"]["end"][0])]
        lines.append(f"Measured {' to '.join([dates[0], dates[-1]] if len(dates) > 1 else dates)} (UTC) on "
                     f"{line}; 1-minute load average {min(loads):.1f}-{max(loads):.1f}.")
    return lines


def ops_section(record: dict, tally: list) -> list:
    method = record["method"]
    lines = ["### Kernels: `benchmarks/bench_ops.py`", "",
             f"float32; median of {method['rounds']} rounds x {method['calls']} calls per library, each round "
             f"after a warm-up call; FLOPs = 2 x the multiply-adds of the direct convolution; NumPy's own "
             f"float32 GEMM {record['gemm']['size']}^3: {record['gemm']['gflops']:.1f} GFLOP/s. The 3x3 layers "
             "with at least 8 input channels run Winograd F(2x2, 3x3), which does 2.25x fewer multiply-adds, "
             "so their GFLOP/s (and % of GEMM) are effective rates and can pass 100%.", ""]
    if method.get("quick"):
        lines += ["**A `--quick` run (batches 8x smaller): not comparable with the targets.**", ""]
    lines += table(["workload", "pass", "volnet ms", "torch ms", "volnet/torch", "volnet % of GEMM", "target met"], [
        (f"{r['workload']}, N={r['batch']}", r["pass"], cell(r["volnet_ms"], ".2f"), cell(r["torch_ms"], ".2f"),
         cell(r["ratio"], ".2f"), cell(r["gemm_percent"], ".0f"), verdict("bench_ops", r, tally))
        for r in record["rows"]])
    return lines


def images_per_second(name: str, record: dict, tally: list) -> list:
    """The table of a benchmark that reports images/s per batch (training step, inference)."""
    return table(["batch", "volnet images/s", "torch images/s", "volnet/torch", "target met"], [
        (r["batch"], cell(r["volnet_images_per_s"], ".1f"), cell(r["torch_images_per_s"], ".1f"),
         cell(r["ratio"], ".2f"), verdict(name, r, tally)) for r in record["rows"]])


def train_section(record: dict, tally: list) -> list:
    method = record["method"]
    return ["### Training step: `benchmarks/bench_train.py`", "",
            f"`cifar_reference`: forward, softmax loss, backward, momentum update; median of {method['rounds']} "
            f"rounds x {method['calls']} steps per library, each round after a warm-up step.", "",
            *images_per_second("bench_train", record, tally)]


def infer_section(record: dict, tally: list) -> list:
    method = record["method"]
    lines = ["### Inference: `benchmarks/bench_infer.py`", "",
             f"`cifar_reference` forward pass (torch: eval mode, `inference_mode`); median of {method['rounds']} "
             f"rounds x {method['calls']} passes per library, each round after a warm-up pass; "
             f"layers left holding a forward cache: {record['layers_with_cache']}.", ""]
    lines += images_per_second("bench_infer", record, tally)
    peers = [r for r in record["rows"] if r.get("ort_images_per_s") is not None]
    if peers:  # onnxruntime, running volnet's own ONNX export of the same net, as a second peer
        lines += ["", "The same net exported with `volnet.export.to_onnx`, in onnxruntime (CPU):", "",
                  *table(["batch", "volnet images/s", "onnxruntime images/s", "volnet/onnxruntime"], [
                      (r["batch"], cell(r["volnet_images_per_s"], ".1f"), cell(r["ort_images_per_s"], ".1f"),
                       cell(r["ratio_ort"], ".2f")) for r in peers])]
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
        sys.exit(f"no results in {RESULTS}/<machine kind>/: run `make bench` first")
    lines = ["## Speed and memory", "",
             "Reproduce with `make bench` on each kind of machine (it writes `benchmarks/results/<machine kind>/"
             "*.json`; `benchmarks/report.py` prints this section from them). Every target, on every machine kind "
             "measured so far:", "", *side_by_side(kinds), ""]
    for kind, results in kinds.items():
        lines += [*kind_lines(kind, results), ""]
    print("\n".join(lines).rstrip())


if __name__ == "__main__":
    main()
