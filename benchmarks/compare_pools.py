"""Time volnet's split workers that spin between parts against the standard library's blocking pool, in one process.

Run from the repository root:

    .venv/bin/python benchmarks/compare_pools.py
    .venv/bin/python benchmarks/compare_pools.py --rounds 12 --calls 3

Both pools (:mod:`volnet.ops.handoff`) serve the process's scheduler in turn: before each block of calls the
scheduler is handed the pool that block measures. Cases: a split of two empty parts (what handing the parts
over costs), and the LeNet and cifar-ref training steps at batch 64 and inference at batch 256. The figure
printed is the median over the rounds of spinning time / blocking time (a round's time is its fastest call),
as in ``compare_revisions.py``. The figures in docs/threads.md came from it.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import configure_volnet, cpu_model, print_load
from compare_revisions import inference, paired_ratio, training_step

import volnet
import volnet.zoo
from volnet.ops import handoff, threads


def on_pool(pool, fn):
    """``fn`` run with ``pool`` as the scheduler's pool (the scheduler grows no pool while it has one)."""
    scheduler = threads.scheduler()

    def run():
        scheduler._pool, scheduler._pool_size = pool, pool.count
        return fn()

    return run


def empty_split():
    def nothing(start, stop):
        yield

    return lambda: threads.split(nothing, 2, 2, blas_held=True)


def net_and_batch(name: str, batch: int):
    net = volnet.zoo.build_named(name, seed=0)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, *net.input_shape)).astype(net.dtype)
    return net, images, rng.integers(0, net.output_shape[-1], batch)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds in which the two pools take turns")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per pool and round")
    args = parser.parse_args(argv)
    configure_volnet()
    if threads.cores() < 2 or not handoff.spins():
        raise SystemExit("needs 2 or more cores, Numba and an x86-64 CPU (where volnet's workers spin)")
    spinning, blocking = handoff.SpinningPool(1), handoff.BlockingPool(1)
    print(f"{cpu_model()}; spinning workers against the blocking pool, one process")
    print_load()
    cases = {"split of two empty parts": empty_split()}
    for name in ("lenet", "cifar-ref"):
        net, images, labels = net_and_batch(name, 64)
        cases[f"{name} training step, batch 64"] = training_step(volnet, images, labels, net)
        net, images, _ = net_and_batch(name, 256)
        cases[f"{name} inference, batch 256"] = inference(volnet, images, net)
    print(f"median of {args.rounds} rounds, each the fastest of {args.calls} calls per pool\n")
    print(f"{'case':<34}  {'spinning ms':>11}  {'blocking ms':>11}  {'ratio':>6}")
    for case, fn in cases.items():
        ratio, new_ms, old_ms = paired_ratio(on_pool(spinning, fn), on_pool(blocking, fn), args.rounds, args.calls)
        print(f"{case:<34}  {new_ms:11.3f}  {old_ms:11.3f}  {ratio:6.2f}")
    threads.scheduler().close()
    spinning.close(wait=True)
    blocking.close(wait=True)
    print_load()


if __name__ == "__main__":
    main()
