"""Time this checkout's volnet against the volnet of an earlier git revision, in one process.

Run from the repository root:

    .venv/bin/python benchmarks/compare_revisions.py 543b444            # the code before issue 6
    .venv/bin/python benchmarks/compare_revisions.py HEAD~1 --rounds 4

The revision's ``src/volnet`` is exported with ``git archive`` into a
temporary folder under another package name, so both versions load side by
side (volnet's own imports are relative). On the CIFAR-10 reference net, a
momentum training step at batch 64 and inference at batches 1 and 256 take
turns between the two versions (``--nets`` names other nets of the zoo: each at its
training-step batch from ``bench_train.NETS``, inference at batches 1 and 256). In each round, each version makes one
untimed call and then ``--calls`` timed ones, and its time for the round is
the fastest of those. The figure printed is the median over the rounds of
new time / old time: the machine's load drifts, and a ratio taken within one
round cancels most of that drift.

Process-wide settings are shared: this script turns freed memory kept for
reuse on (``volnet.configure``, as every benchmark does with
``_common.configure_volnet``), so the ratio measures the kernels, not those
settings.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

import volnet
import volnet.optim
import volnet.zoo
from volnet.ops.losses import softmax_cross_entropy

from _common import compare_interleaved, print_load  # this folder's shared helpers
from bench_train import NETS  # net -> the batch of its training-step target

volnet.configure(keep_freed_memory=True)  # (revisions before it turned this on at import)


def load_revision(revision: str, folder: Path):
    """volnet as of ``revision``, imported as the package ``volnet_<revision>``."""
    name = "volnet_" + "".join(c if c.isalnum() else "_" for c in revision)
    archive = subprocess.run(["git", "archive", revision, "src/volnet"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "src" / "volnet").rename(folder / name)
    sys.path.insert(0, str(folder))
    for module in ("zoo", "optim"):  # the subpackages the cases use
        importlib.import_module(f"{name}.{module}")
    return importlib.import_module(name)


def training_step(package, images, labels, net=None):
    """A momentum training step of ``net`` (default: the package's cifar-ref) on the batch, as a function."""
    net = net or package.zoo.cifar_reference(seed=0)
    optimizer = package.optim.make_optimizer("momentum", net.params(), lr=1e-3, momentum=0.9)

    def step():
        _, dscores = softmax_cross_entropy(net.forward(images, train=True), labels)
        net.backward(dscores, input_grad=False)
        optimizer.step()

    return step


def net_cases(package_new, package_old, name: str, batch: int, rng) -> dict:
    """``{case: (new, old)}`` for the zoo's net ``name`` (the same weights in both versions, ``seed=0``): a
    training step at ``batch`` and inference at batches 1 and 256."""
    new_net, old_net = (package.zoo.build_named(name, seed=0) for package in (package_new, package_old))
    images = rng.standard_normal((batch, *new_net.input_shape), dtype=np.float32)
    labels = rng.integers(0, new_net.output_shape[-1], batch)
    cases = {f"{name} training step, batch {batch}": (training_step(package_new, images, labels, new_net),
                                                      training_step(package_old, images, labels, old_net))}
    for size in (1, 256):
        batch_images = rng.standard_normal((size, *new_net.input_shape), dtype=np.float32)
        cases[f"{name} inference, batch {size}"] = (inference(package_new, batch_images, new_net),
                                                    inference(package_old, batch_images, old_net))
    return cases


def inference(package, images, net=None):
    net = net or package.zoo.cifar_reference(seed=0)
    return lambda: net.forward(images)


def paired_ratio(new, old, rounds: int, calls: int) -> tuple[float, float, float]:
    """``(median of new/old per round, median new ms, median old ms)``; a round's time is its fastest call."""
    times = compare_interleaved({"new": new, "old": old}, rounds, calls)
    best = {name: [min(seconds[i: i + calls]) for i in range(0, len(seconds), calls)]
            for name, seconds in times.items()}
    ratios = [n / o for n, o in zip(best["new"], best["old"])]
    return statistics.median(ratios), 1e3 * statistics.median(best["new"]), 1e3 * statistics.median(best["old"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to compare against, e.g. HEAD~1 or a commit hash")
    parser.add_argument("--rounds", type=int, default=8, help="rounds in which the two versions take turns")
    parser.add_argument("--calls", type=int, default=2, help="timed calls per version and round")
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["cifar-ref"], metavar="NET",
                        help=f"the zoo's nets to time (default: cifar-ref; choices: {', '.join(NETS)})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        old = load_revision(args.revision, Path(folder))
        print(f"volnet in {Path(volnet.__file__).parent} against {args.revision}")
        print_load()
        rng = np.random.default_rng(0)
        cases = {}
        for name in args.nets:
            cases.update(net_cases(volnet, old, name, NETS[name], rng))
        print(f"median of {args.rounds} rounds, each the fastest of {args.calls} calls per version\n")
        width = max(map(len, cases))
        print(f"{'case':<{width}}  {'new ms':>8}  {'old ms':>8}  {'new/old':>7}")
        for case, (new, old_fn) in cases.items():
            ratio, new_ms, old_ms = paired_ratio(new, old_fn, args.rounds, args.calls)
            print(f"{case:<{width}}  {new_ms:8.2f}  {old_ms:8.2f}  {ratio:7.2f}")
        print_load()


if __name__ == "__main__":
    main()
