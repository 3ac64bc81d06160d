"""Time inference (forward only) of the zoo's nets in volnet, PyTorch and onnxruntime on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/bench_infer.py                                # the four nets, batches 1 and 256
    .venv/bin/python benchmarks/bench_infer.py --nets lenet --batches 1 32 --rounds 3 --calls 1 --no-fresh

The networks are bench_train.py's four (``cifar-ref``, ``lenet``,
``resnet18-cifar``, ``alexnet-cifar``: ``volnet.zoo.build_named(name,
seed=0)``, 10 classes, at the net's own input size), each at batches 1 and
256 (``--batches``). volnet runs ``net.forward(x)`` (``train=False``: no
layer keeps a cache); PyTorch runs ``volnet.interop.to_torch`` of the same
network (same weights) in eval mode under ``torch.inference_mode()``, on an
NCHW copy of the batch prepared outside the timed region, with as many
threads as NumPy's BLAS has. Each net and batch is compared two ways
(``_common``):

* in turn, in this process: the libraries take turns in up to ``--rounds``
  rounds of one untimed and up to ``--calls`` timed forward passes each
  (``_common.compare_within_budget``); a heavy case (resnet18-cifar at
  batch 256 takes seconds a pass) gets fewer calls, then fewer rounds
  (never fewer than 3 rounds of 1 pass), so that it takes about
  ``--budget`` seconds; every row records the rounds and calls it got;
* in fresh processes (unless ``--no-fresh``): volnet and PyTorch each alone
  in a new interpreter (this script with ``--child``, building the same net
  from the same seed), one warm-up and as many timed passes as the first
  way took each library.

Images/s is the batch size over the median time, and a ratio is volnet's
time over torch's (the target: at most 1). onnxruntime, when installed,
runs ``volnet.export.build_onnx`` of the same network (NHWC input, the
batch volnet gets) in a session with as many intra-op threads, taking its
turn in the first way only; its ratio is volnet's time over onnxruntime's.
After the volnet runs the script counts the layers that still hold a
forward cache, which should be none. The table is also written to
``benchmarks/results/<machine kind>/bench_infer.json``.
"""

from __future__ import annotations

import argparse
import statistics

from volnet.interop import to_torch  # imports torch only when called

# this folder's shared helpers, and the training benchmark's nets and fixed random batch
from _common import (Results, Table, add_comparison_arguments, cell, child_settings, compare_fresh,
                     compare_within_budget, configure_volnet, fresh_columns, installed_version, optional_torch,
                     print_fresh_processes, print_load, report_alone, start, timing_row, to_nchw,
                     WARMUP_SECONDS)
from bench_train import NETS, build, make_batch


def torch_forward(torch, net, images):
    """The PyTorch forward pass of ``volnet.interop.to_torch(net)`` in eval mode on an NCHW copy of
    ``images``, without autograd's bookkeeping."""
    model, x = to_torch(net).eval(), to_nchw(images, torch)

    def forward():
        with torch.inference_mode():
            return model(x)

    return forward


def optional_onnxruntime():
    """The onnxruntime module, or None where it is not installed (no onnxruntime column)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def ort_session(onnxruntime, net, threads: int):
    """An onnxruntime CPU session of ``net`` exported by volnet, with ``threads`` intra-op threads."""
    from volnet.export import build_onnx

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(build_onnx(net).SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def ort_columns(times: dict, batch: int, volnet_ms: float) -> dict:
    """onnxruntime's median and min ms, images/s and volnet's time over it (None without onnxruntime)."""
    seconds = times.get("onnxruntime")
    if not seconds:
        return {"ort_ms": None, "ort_min_ms": None, "ort_images_per_s": None, "ratio_ort": None}
    median = statistics.median(seconds)
    return {"ort_ms": 1e3 * median, "ort_min_ms": 1e3 * min(seconds), "ort_images_per_s": batch / median,
            "ratio_ort": volnet_ms / (1e3 * median)}


def layers_with_cache(net) -> int:
    """How many layers (nested ones included) hold a forward cache (``Layer._keep`` stores it in ``_cache``)."""
    return sum(layer._cache is not None for top in net.layers for _, layer in top.named_layers())


def compare(name: str, net, batch: int, peers: dict, args) -> tuple[dict, dict]:
    """One row (a dict) of one net and batch: both ways' times, images/s and ratios, onnxruntime's columns,
    rounds and calls; and the fresh processes' views (empty with ``--no-fresh``).

    ``peers`` maps "torch" and "onnxruntime" (those installed) to a function of the batch that returns the
    peer's forward pass on it.
    """
    images, _ = make_batch(batch, net.input_shape)
    passes = {"volnet": lambda: net.forward(images, train=False),
              **{peer: forward_on(images) for peer, forward_on in peers.items()}}
    times, rounds, calls = compare_within_budget(passes, args.budget, args.rounds, args.calls)
    row = {"net": name, "batch": batch, "rounds": rounds, "calls": calls, **timing_row(times, batch)}
    row.update(ort_columns(times, batch, row["volnet_ms"]))
    libraries = [library for library in passes if library != "onnxruntime"]
    fresh, views = (compare_fresh("bench_infer", ["--nets", name, "--batches", batch], rounds * calls, libraries)
                    if args.fresh else ({}, {}))
    row.update(timing_row(fresh, batch, way="_fresh"))
    return row, views


TABLE = Table((
    ("net", 14, lambda r: r["net"]),
    ("batch", 5, lambda r: r["batch"]),
    ("volnet img/s", 12, lambda r: cell(r["volnet_images_per_s"], ".1f")),
    ("volnet ms", 9, lambda r: cell(r["volnet_ms"], ".2f")),
    ("torch ms", 8, lambda r: cell(r["torch_ms"], ".2f")),
    ("ORT ms", 7, lambda r: cell(r["ort_ms"], ".2f")),
    ("volnet/torch", 12, lambda r: cell(r["ratio"], ".2f")),
    ("volnet/ORT", 10, lambda r: cell(r["ratio_ort"], ".2f")),
    *fresh_columns(".2f"),
))


def child(args) -> None:
    """``--child``: time one library's forward pass alone on the one net and batch named, in this fresh process."""
    torch = child_settings(args.child)
    (name,), (batch,) = args.nets, args.batches
    net = build(name)
    images, _ = make_batch(batch, net.input_shape)
    forward = (lambda: net.forward(images, train=False)) if args.child == "volnet" else \
        torch_forward(torch, net, images)
    report_alone(args.child, forward, args.calls, torch)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_comparison_arguments(parser, rounds=6, calls=3)
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS), help="nets to time")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256], help="batch sizes to time")
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    configure_volnet()
    torch, onnxruntime = optional_torch(), optional_onnxruntime()
    results = Results("bench_infer")
    blas, threads = start(torch)
    print(f"inference, float32; in turn: median of up to {args.rounds} rounds x {args.calls} forward passes, each "
          f"round after {WARMUP_SECONDS:g} s of warm-up passes, about {args.budget:g} s per row; fresh processes: "
          f"{'1 warm-up, then as many passes' if args.fresh else 'skipped'}; "
          f"onnxruntime {onnxruntime.__version__ if onnxruntime else 'not installed'}\n")
    TABLE.print_heading()
    rows, views, cached = [], {}, 0
    for name in args.nets:
        net = build(name)
        peers = {}
        if torch:
            peers["torch"] = lambda images, net=net: torch_forward(torch, net, images)
        if onnxruntime:
            session = ort_session(onnxruntime, net, threads)
            peers["onnxruntime"] = lambda images, session=session: lambda: session.run(None, {"input": images})
        for batch in args.batches:
            row, row_views = compare(name, net, batch, peers, args)
            rows.append(row)
            views.update(row_views)
            TABLE.print_row(row)
        cached += layers_with_cache(net)

    print(f"\nlayers holding a forward cache after the volnet runs: {cached} (expected 0)")
    print_fresh_processes(views)
    print_load()
    results.write({"rounds": args.rounds, "calls": args.calls, "budget_s": args.budget, "fresh": args.fresh,
                   "warmup_s": WARMUP_SECONDS,
                   "threads": threads, "dtype": "float32",
                   "statistic": "median of all timed calls (min kept as *_min_ms); rounds and calls per row",
                   "networks": {name: f"build_named({name!r}, classes=10, seed=0)" for name in args.nets},
                   "onnxruntime": installed_version("onnxruntime"),
                   "ratio_ort": "volnet ms / onnxruntime ms (volnet.export.build_onnx, NHWC input; in turn only)"},
                  rows, layers_with_cache=cached, fresh_processes=views)


if __name__ == "__main__":
    main()
