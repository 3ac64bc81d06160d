"""Peak memory of a training step and of a prediction, measured, against volnet's own estimate.

Run from the repository root:

    .venv/bin/python benchmarks/bench_memory.py               # batch 64
    .venv/bin/python benchmarks/bench_memory.py --batch 8

The network is ``volnet.zoo.cifar_reference(seed=0)``. The training step is
bench_train.py's: forward (``train=True``), softmax cross-entropy, backward
with ``input_grad=False``, momentum SGD update. The prediction is
``net.forward(x)``. Each is measured with tracemalloc (NumPy reports its
allocations to it): tracing starts before the network is built, so weights,
gradients, optimizer state and the batch count; after one warm-up, the peak
of one more step (or prediction) is the measurement. The estimate is
``volnet.analysis.analyze(net, batch, optimizer="momentum")``'s memory
total for training and for inference, which replays the engine's
allocations on byte counts (as ``tests/analysis/test_memory.py`` holds it to
the same measurement). The ratio is measured over estimate (the target: at
most 1.3). The table is also written to ``benchmarks/results/<machine kind>/bench_memory.json``.
"""

from __future__ import annotations

import argparse
import tracemalloc

from volnet.analysis import analyze, format_bytes
from volnet.zoo import cifar_reference

# this folder's shared helpers, and the training benchmark's batch and step
from _common import Results, configure_volnet, match_threads, print_environment, print_load
from bench_train import make_batch, volnet_step

MODES = ("train", "inference")


def measure(mode: str, batch: int) -> int:
    """Peak bytes traced during one training step (or prediction) after one warm-up, counting everything
    allocated since before the network was built."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        net = cifar_reference(seed=0)
        images, labels = make_batch(batch, net.input_shape)
        run = volnet_step(net, images, labels) if mode == "train" else lambda: net.forward(images, train=False)
        run()
        tracemalloc.reset_peak()
        run()
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="images per step")
    args = parser.parse_args(argv)

    configure_volnet()
    results = Results("bench_memory")
    blas, threads = match_threads(None)
    print_environment(blas, threads, None, uses_torch=False)
    print_load()
    report = analyze(cifar_reference(seed=0, allocate=False), batch=args.batch, optimizer="momentum")
    # The first pass through some code paths allocates module-level objects once (under 1 MB): not the step's.
    measure("train", 2)
    print(f"cifar-ref, batch {args.batch}, float32, momentum SGD; peak traced by tracemalloc after 1 warm-up, "
          f"against volnet.analysis' estimate\n")

    print(f"{'mode':<9}  {'measured':>22}  {'estimate':>22}  {'measured/estimate':>17}")
    rows = []
    for mode in MODES:
        measured, estimate = measure(mode, args.batch), report.memory(mode).total
        rows.append({"mode": mode, "batch": args.batch, "measured_bytes": measured, "estimate_bytes": estimate,
                     "ratio": measured / estimate})
        print(f"{mode:<9}  {format_bytes(measured):>22}  {format_bytes(estimate):>22}  {measured / estimate:17.2f}")
    print_load()
    results.write({"tool": "tracemalloc", "warmup_steps": 1, "dtype": "float32", "network": "cifar_reference(seed=0)",
                   "optimizer": "momentum", "estimate": "volnet.analysis.analyze(net, batch, "
                                                        "optimizer='momentum').memory(mode).total"},
                  rows)


if __name__ == "__main__":
    main()
