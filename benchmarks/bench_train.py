"""Time one training step of the zoo's nets in volnet and in PyTorch on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/bench_train.py                      # the four nets of NETS, their batches
    .venv/bin/python benchmarks/bench_train.py --nets lenet --batch 32 --rounds 3 --calls 1 --no-fresh

The networks (:data:`NETS`, each at the batch of its target) are
``volnet.zoo.build_named(name, seed=0)`` with 10 classes at the net's own
input size: ``cifar-ref`` (INPUT[32x32x3] -> [CONV3-32 -> RELU]*2 -> POOL2
-> [CONV3-64 -> RELU]*2 -> POOL2 -> FC512 -> RELU -> FC10, batch 64),
``lenet`` (28x28x1, batch 64), ``resnet18-cifar`` (batch 32) and
``alexnet-cifar`` (batch 64). One step is what training repeats: forward,
softmax cross-entropy loss, backward, and an SGD momentum update (lr 0.001,
momentum 0.9; both libraries use torch's formulation), in float32, on one
fixed random batch. The PyTorch model is ``volnet.interop.to_torch`` of the
same network (same weights, NCHW input prepared outside the timed region),
with as many threads as NumPy's BLAS has. Each net is compared two ways
(``_common``):

* in turn, in this process: the libraries take turns in up to ``--rounds``
  rounds of one untimed and up to ``--calls`` timed steps each
  (``_common.compare_within_budget``), so that changing load on the machine
  slows both alike; a heavy net gets fewer calls, then fewer rounds (never
  fewer than 3 rounds of 1 step), so that it takes about ``--budget``
  seconds; every row records the rounds and calls it got;
* in fresh processes (unless ``--no-fresh``): each library alone in a new
  interpreter (this script with ``--child``, building the same net from the
  same seed), one warm-up step and as many timed steps as the first way
  took each library, as a user's training runs: PyTorch without volnet's
  process settings, volnet without torch loaded.

Images/s is the batch size over the median step time; a ratio is volnet's
step time over torch's.

The per-layer table then times volnet's forward and backward of every
top-level layer (and the loss and update) of each net over as many steps as
the first way took, median per part: where volnet's step time goes. The
layers run within network passes, with the pass's workers, as in a step
(only CONV -> RELU pairs unfused). All the
tables are also written to ``benchmarks/results/<machine kind>/bench_train.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from volnet.interop import to_torch  # imports torch only when called
from volnet.ops.losses import softmax_cross_entropy
from volnet.ops.threads import network_pass
from volnet.optim import make_optimizer
from volnet.shapes import format_volume
from volnet.zoo import build_named

# this folder's shared helpers
from _common import (Results, Table, add_comparison_arguments, cell, child_settings, compare_fresh,
                     compare_within_budget, configure_volnet, fresh_columns, optional_torch, print_fresh_processes,
                     print_load, report_alone, start, timing_row, to_nchw,
                     WARMUP_SECONDS)

LR, MOMENTUM, CLASSES = 1e-3, 0.9, 10
NETS = {"cifar-ref": 64, "lenet": 64, "resnet18-cifar": 32, "alexnet-cifar": 64}  # net -> batch of its target


def build(name: str):
    """The zoo's net ``name`` with seed 0 and :data:`CLASSES` classes, at its own input size."""
    return build_named(name, classes=CLASSES, seed=0)


def make_batch(batch: int, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random float32 batch ``(N, *input_shape)`` and its labels."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, *input_shape), dtype=np.float32), rng.integers(0, CLASSES, batch)


def volnet_step(net, images, labels):
    """One volnet training step, as ``volnet.train.Trainer`` runs it."""
    optimizer = make_optimizer("momentum", net.params(), lr=LR, momentum=MOMENTUM)

    def step():
        scores = net.forward(images, train=True)
        _, dscores = softmax_cross_entropy(scores, labels)
        net.backward(dscores, input_grad=False)
        optimizer.step()

    return step


def torch_step(torch, net, images, labels):
    """The same step in PyTorch, on ``volnet.interop.to_torch`` of ``net`` and NCHW copies of the batch."""
    model = to_torch(net).train()
    x, y = to_nchw(images, torch), torch.from_numpy(labels)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def step_parts(net, optimizer, images, labels) -> dict:
    """One volnet training step taken apart; seconds per part: ``(layer index, "fwd"/"bwd")``, "loss", "update".

    The layers run as ``net.forward`` and ``net.backward`` run them, each pass
    holding the cores (``volnet.ops.threads.network_pass``) and every layer
    given the pass's workers, so that each part splits its batch as in the
    step; only CONV -> RELU pairs run unfused, to be timed apart.
    """
    seconds, x = {}, images
    with network_pass(len(images)) as workers:
        for index, layer in enumerate(net.layers):
            start = time.perf_counter()
            x = layer.forward(x, train=True, workers=workers)
            seconds[index, "fwd"] = time.perf_counter() - start
    start = time.perf_counter()
    _, dout = softmax_cross_entropy(x, labels)
    seconds["loss"] = time.perf_counter() - start
    with network_pass(len(images)) as workers:
        for index in range(len(net.layers) - 1, -1, -1):  # the first layer skips its input gradient, as in training
            start = time.perf_counter()
            dout = net.layers[index].backward(dout, input_grad=index > 0, workers=workers)
            seconds[index, "bwd"] = time.perf_counter() - start
    start = time.perf_counter()
    optimizer.step()
    seconds["update"] = time.perf_counter() - start
    return seconds


def layer_breakdown(net, images, labels, steps: int) -> list:
    """Median milliseconds of every part of :func:`step_parts` over ``steps`` steps after one warm-up;
    one row (a dict) per layer, then the loss and the update."""
    optimizer = make_optimizer("momentum", net.params(), lr=LR, momentum=MOMENTUM)
    step_parts(net, optimizer, images, labels)
    runs = [step_parts(net, optimizer, images, labels) for _ in range(steps)]
    ms = {part: 1e3 * statistics.median(run[part] for run in runs) for part in runs[0]}
    rows = [{"index": i + 1, "layer": repr(layer), "fwd_ms": ms[i, "fwd"], "bwd_ms": ms[i, "bwd"],
             "output": format_volume((1, 1, *shape) if len(shape) == 1 else shape)}
            for i, (layer, shape) in enumerate(zip(net.layers, net.shapes))]
    return rows + [{"index": None, "layer": "softmax loss", "output": "", "fwd_ms": ms["loss"], "bwd_ms": 0.0},
                   {"index": None, "layer": "momentum update", "output": "", "fwd_ms": 0.0, "bwd_ms": ms["update"]}]


LAYER_WIDTH = 48  # a residual block's repr lists its whole body: shortened to keep one line per layer


def print_breakdown(name: str, rows: list, step_ms: float) -> None:
    total = sum(r["fwd_ms"] + r["bwd_ms"] for r in rows)
    print(f"\nvolnet's {name} step, layer by layer:")
    print(f"{'#':>2}  {'layer':<{LAYER_WIDTH}}  {'output':<12}  {'fwd ms':>8}  {'bwd ms':>8}  {'share':>6}")
    for r in rows:
        fwd, bwd = r["fwd_ms"], r["bwd_ms"]
        layer = r["layer"] if len(r["layer"]) <= LAYER_WIDTH else r["layer"][:LAYER_WIDTH - 3] + "..."
        print(f"{r['index'] or '':>2}  {layer:<{LAYER_WIDTH}}  {r['output']:<12}  {fwd:8.2f}  {bwd:8.2f}  "
              f"{(fwd + bwd) / total:6.1%}")
    print(f"sum of the parts' medians {total:.1f} ms; median whole step {step_ms:.1f} ms")


def compare(name: str, batch: int, args, torch) -> tuple[dict, dict, list]:
    """One net's row (a dict: both ways' times, images/s, ratios, rounds and calls), the fresh processes'
    views (empty with ``--no-fresh``), and volnet's layer breakdown."""
    net = build(name)
    images, labels = make_batch(batch, net.input_shape)
    steps = {"volnet": volnet_step(net, images, labels)}
    if torch:
        steps["torch"] = torch_step(torch, net, images, labels)  # the same initial weights
    times, rounds, calls = compare_within_budget(steps, args.budget, args.rounds, args.calls)
    row = {"net": name, "batch": batch, "parameters": net.num_params, "rounds": rounds, "calls": calls,
           **timing_row(times, batch)}
    fresh, views = (compare_fresh("bench_train", ["--nets", name, "--batch", batch], rounds * calls, list(steps))
                    if args.fresh else ({}, {}))
    row.update(timing_row(fresh, batch, way="_fresh"))
    return row, views, layer_breakdown(net, images, labels, rounds * calls)


TABLE = Table((
    ("net", 14, lambda r: r["net"]),
    ("batch", 5, lambda r: r["batch"]),
    ("volnet img/s", 12, lambda r: cell(r["volnet_images_per_s"], ".1f")),
    ("torch img/s", 11, lambda r: cell(r["torch_images_per_s"], ".1f")),
    ("volnet ms", 9, lambda r: cell(r["volnet_ms"], ".1f")),
    ("torch ms", 8, lambda r: cell(r["torch_ms"], ".1f")),
    ("volnet/torch", 12, lambda r: cell(r["ratio"], ".2f")),
    *fresh_columns(".1f"),
))


def child(args) -> None:
    """``--child``: time one library's step alone on the one net named, in this fresh process."""
    torch = child_settings(args.child)
    (name,) = args.nets
    net = build(name)
    images, labels = make_batch(args.batch, net.input_shape)
    step = volnet_step(net, images, labels) if args.child == "volnet" else torch_step(torch, net, images, labels)
    report_alone(args.child, step, args.calls, torch)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_comparison_arguments(parser, rounds=8, calls=4)
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS), help="nets to time")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: each net's, in NETS)")
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    configure_volnet()
    torch = optional_torch()
    results = Results("bench_train")
    blas, threads = start(torch)
    print(f"float32, momentum SGD; in turn: median of up to {args.rounds} rounds x {args.calls} steps, each round "
          f"after {WARMUP_SECONDS:g} s of warm-up steps, about {args.budget:g} s per net; fresh processes: "
          f"{'1 warm-up, then as many steps' if args.fresh else 'skipped'}\n")
    TABLE.print_heading()
    rows, views, layers = [], {}, {}
    for name in args.nets:
        row, row_views, layers[name] = compare(name, args.batch or NETS[name], args, torch)
        rows.append(row)
        views.update(row_views)
        TABLE.print_row(row)
    for row in rows:
        print_breakdown(row["net"], layers[row["net"]], row["volnet_ms"])
    print()
    print_fresh_processes(views)
    print_load()
    results.write({"rounds": args.rounds, "calls": args.calls, "budget_s": args.budget, "fresh": args.fresh,
                   "warmup_s": WARMUP_SECONDS,
                   "threads": threads, "dtype": "float32",
                   "statistic": "median of all timed steps (min kept as *_min_ms); rounds and calls per row",
                   "networks": {name: f"build_named({name!r}, classes={CLASSES}, seed=0)" for name in args.nets},
                   "optimizer": f"momentum (lr {LR}, momentum {MOMENTUM})"},
                  rows, layers=layers, fresh_processes=views)


if __name__ == "__main__":
    main()
