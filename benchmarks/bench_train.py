"""Time one training step of the CIFAR-10 reference net in volnet and in PyTorch on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/bench_train.py                      # batch 64, 5 rounds of 4 steps
    .venv/bin/python benchmarks/bench_train.py --rounds 2 --calls 2 --batch 32

The network is ``volnet.zoo.cifar_reference``: INPUT[32x32x3] -> [CONV3-32 ->
RELU]*2 -> POOL2 -> [CONV3-64 -> RELU]*2 -> POOL2 -> FC512 -> RELU -> FC10.
One step is what training repeats: forward, softmax cross-entropy loss,
backward, and an SGD momentum update (lr 0.001, momentum 0.9; both libraries
use torch's formulation), in float32, on one fixed random batch. The
PyTorch model is ``volnet.interop.to_torch`` of the same network (same
weights, NCHW input prepared outside the timed region); both run in this
process with the same thread count (torch is set to NumPy's BLAS thread
count), taking turns in ``--rounds`` rounds of one untimed and ``--calls``
timed steps each (``_common.compare_interleaved``), so that changing load
on the machine slows both alike. Images/s is the batch size over the median
step time; the ratio is volnet's step time over torch's.

The per-layer table then times volnet's forward and backward of every layer
(and the loss and update) over another rounds x calls steps, median per
part: where volnet's step time goes. Both tables are also written to
``benchmarks/results/<machine kind>/bench_train.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from volnet.interop import to_torch
from volnet.ops.losses import softmax_cross_entropy
from volnet.optim import make_optimizer
from volnet.shapes import format_volume
from volnet.zoo import cifar_reference

# this folder's shared helpers
from _common import Results, compare_interleaved, print_load, start, timing_row, to_nchw

try:
    import torch
    import torch.nn.functional as tF
except ImportError:  # volnet's numbers alone are shown
    torch = None

LR, MOMENTUM, CLASSES = 1e-3, 0.9, 10


def make_batch(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random float32 batch ``(N, 32, 32, 3)`` and its labels."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, 32, 32, 3), dtype=np.float32), rng.integers(0, CLASSES, batch)


def volnet_step(net, images, labels):
    """One volnet training step, as ``volnet.train.Trainer`` runs it."""
    optimizer = make_optimizer("momentum", net.params(), lr=LR, momentum=MOMENTUM)

    def step():
        scores = net.forward(images, train=True)
        _, dscores = softmax_cross_entropy(scores, labels)
        net.backward(dscores, input_grad=False)
        optimizer.step()

    return step


def torch_step(model, images, labels):
    """The same step in PyTorch, on NCHW copies of the batch."""
    x, y = to_nchw(images, torch), torch.from_numpy(labels)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        tF.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def step_parts(net, optimizer, images, labels) -> dict:
    """One volnet training step taken apart; seconds per part: ``(layer index, "fwd"/"bwd")``, "loss", "update"."""
    seconds, x = {}, images
    for index, layer in enumerate(net.layers):
        start = time.perf_counter()
        x = layer.forward(x, train=True)
        seconds[index, "fwd"] = time.perf_counter() - start
    start = time.perf_counter()
    _, dout = softmax_cross_entropy(x, labels)
    seconds["loss"] = time.perf_counter() - start
    for index in range(len(net.layers) - 1, -1, -1):  # the first layer skips its input gradient, as in training
        start = time.perf_counter()
        dout = net.layers[index].backward(dout, input_grad=index > 0)
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


def print_breakdown(rows: list, step_ms: float) -> None:
    total = sum(r["fwd_ms"] + r["bwd_ms"] for r in rows)
    width = max(len(r["layer"]) for r in rows)
    print(f"{'#':>2}  {'layer':<{width}}  {'output':<12}  {'fwd ms':>8}  {'bwd ms':>8}  {'share':>6}")
    for r in rows:
        fwd, bwd = r["fwd_ms"], r["bwd_ms"]
        print(f"{r['index'] or '':>2}  {r['layer']:<{width}}  {r['output']:<12}  {fwd:8.2f}  {bwd:8.2f}  "
              f"{(fwd + bwd) / total:6.1%}")
    print(f"sum of the parts' medians {total:.1f} ms; median whole step {step_ms:.1f} ms")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds in which the libraries take turns")
    parser.add_argument("--calls", type=int, default=4, help="timed steps per library and round")
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    args = parser.parse_args(argv)

    results = Results("bench_train")
    blas, threads = start(torch)
    net = cifar_reference(seed=0)
    images, labels = make_batch(args.batch)
    steps = {"volnet": volnet_step(net, images, labels)}
    if torch:
        steps["torch"] = torch_step(to_torch(net), images, labels)  # the same initial weights
    print(f"cifar-ref, {net.num_params:,} parameters; batch {args.batch}, float32; median of "
          f"{args.rounds} rounds x {args.calls} steps, each round after 1 warm-up step\n")

    row = {"batch": args.batch, **timing_row(compare_interleaved(steps, args.rounds, args.calls), args.batch)}
    for name in steps:
        print(f"{name:<8} {row[f'{name}_images_per_s']:8.1f} images/s  ({row[f'{name}_ms']:.1f} ms/step)")
    if torch:
        print(f"volnet/torch step time: {row['ratio']:.2f}")
    print("\nvolnet's step, layer by layer:")
    layers = layer_breakdown(net, images, labels, args.rounds * args.calls)
    print_breakdown(layers, row["volnet_ms"])
    print_load()
    results.write({"rounds": args.rounds, "calls": args.calls, "warmup_calls_per_round": 1, "threads": threads,
                   "statistic": "median of all timed steps (min kept as *_min_ms)", "dtype": "float32",
                   "network": "cifar_reference(seed=0)", "optimizer": f"momentum (lr {LR}, momentum {MOMENTUM})"},
                  [row], layers=layers)


if __name__ == "__main__":
    main()
