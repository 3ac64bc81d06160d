"""Time whole nets with the direct kernels' uses on this host chosen three ways, taking turns in one process.

Run from the repository root:

    .venv/bin/python benchmarks/compare_uses.py --rounds 8

The three ways: none of the uses (``volnet.ops.direct.USES``: the direct kernels, the compiled Winograd F(4x4, 5x5)
and the streamed CONV off), the uses ``direct.MEASURED`` names for this host's instruction set, and every use. Each
way has its own copy of each net, and the rounds take them in turn, the plans forgotten at each switch
(``volnet.ops.memo``), a pause and warm-up calls before each turn's timed calls; the median and best of each are
printed, inference at each ``--batches`` and a training step
(momentum SGD, as ``bench_train.py`` takes it) at ``--train-batch``. On a host whose instruction set was measured
only on code compiled for it elsewhere (AVX2: docs/performance-log.md, issue 23), this is the measurement that says
which uses ``direct.MEASURED`` should name for it, beside ``compare_direct.py --unmeasured``'s single layers.
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import contextmanager

import bench_train
from _common import compare_interleaved
from volnet.ops import direct, memo, tiled

NETS = ("lenet", "cifar-ref", "alexnet-cifar", "resnet18-cifar")


def ways() -> dict:
    """``{way: uses}``: none, those measured on this host's instruction set, every use."""
    return {"none": (), "measured": tuple(direct.MEASURED.get(tiled.isa(), ())), "every": direct.USES}


@contextmanager
def planned(uses: tuple):
    """The direct kernels planned for ``uses`` on this host's instruction set (plans made before forgotten, on
    entry and on exit, so that no plan outlives the setting it was made under)."""
    saved = direct.MEASURED
    direct.MEASURED = {**saved, tiled.isa(): tuple(uses)}
    memo.forget()
    try:
        yield
    finally:
        direct.MEASURED = saved
        memo.forget()


def passes(name: str, batches, train_batch: int | None) -> list[tuple[str, object]]:
    """``[(label, make)]``: for each pass of net ``name`` a function that builds a fresh net and returns its call."""
    def inference(batch):
        def make():
            net = bench_train.build(name)
            images, _ = bench_train.make_batch(batch, net.input_shape)
            return lambda: net.forward(images, train=False)
        return make

    def training():
        net = bench_train.build(name)
        images, labels = bench_train.make_batch(train_batch, net.input_shape)
        return bench_train.volnet_step(net, images, labels)

    made = [(f"infer batch {batch}", inference(batch)) for batch in batches]
    return made + ([(f"train batch {train_batch}", training)] if train_batch else [])


def in_turn(make, rounds: int, calls: int) -> dict:
    """``{way: seconds of each timed call}``: each way's own copy of the pass (built and warmed up under its uses),
    the ways taking turns as ``_common.compare_interleaved`` has them (a pause, warm-up calls, then the timed ones),
    each way's uses set, and the plans forgotten, at its first call after a switch."""
    runs, current, saved = {}, [None], direct.MEASURED
    for way, uses in ways().items():
        with planned(uses):
            runs[way] = make()
            runs[way]()

    def switching_to(way, uses, run):
        def call():
            if current[0] != way:
                direct.MEASURED = {**saved, tiled.isa(): tuple(uses)}
                memo.forget()
                current[0] = way
            run()
        return call

    try:
        return compare_interleaved({way: switching_to(way, uses, runs[way]) for way, uses in ways().items()},
                                   rounds, calls)
    finally:
        direct.MEASURED = saved
        memo.forget()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 256], help="inference batches (default 1 256)")
    parser.add_argument("--train-batch", type=int, default=64, help="training step's batch; 0: none (default 64)")
    parser.add_argument("--rounds", type=int, default=8, help="turns of each way (default 8)")
    parser.add_argument("--calls", type=int, default=3, help="timed calls a turn (default 3)")
    args = parser.parse_args(argv)
    print(f"instruction set {tiled.isa()}; uses measured here: {', '.join(ways()['measured']) or 'none'}")
    print(f"{'net':15} {'pass':16} " + " ".join(f"{way + ' ms':>17}" for way in ways()) + "   (median / best)")
    for name in args.nets:
        for label, make in passes(name, args.batches, args.train_batch):
            times = in_turn(make, args.rounds, args.calls)
            cells = " ".join(f"{1e3 * statistics.median(t):8.2f} /{1e3 * min(t):7.2f}" for t in times.values())
            print(f"{name:15} {label:16} {cells}", flush=True)


if __name__ == "__main__":
    main()
