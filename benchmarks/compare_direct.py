"""Time volnet with and without its compiled direct kernels (``volnet.ops.direct``), and PyTorch, in turn.

Run from the repository root:

    .venv/bin/python benchmarks/compare_direct.py --rounds 40

(with ``--unmeasured``, every use of the direct kernels on this host's instruction set, those ``direct.MEASURED``
leaves out for it included: AVX2's strided, pointwise and deep batch-1 layers).

Every call of the three (volnet with the direct kernels; volnet with ``direct.ENABLED`` off, which runs
the algorithms of before issue 23; torch on NCHW tensors) is taken in turn, round after round, in this
one process, and each one's best time is printed: on a machine shared with other work, medians moved 2x
between runs, and the best of many calls taken side by side is the figure that compares. The workloads
are the shapes issue 23 names (LeNet's two CONVs, the 3-channel 5x5, the strided 3x3/2, overlapping max
pooling) and LeNet's training step at batch 64; each on 1 and 2 threads (BLAS and torch).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import bench_train
from volnet.ops import conv_backward, conv_forward, direct, memo, pool_backward, pool_forward, tiled

# name, N, H, W, D, F, S, P, K (None: a max pool), fit
WORKLOADS = (("conv5 14x14x16->32", 64, 14, 14, 16, 5, 1, 2, 32, None),
             ("conv5 28x28x1->16", 64, 28, 28, 1, 5, 1, 2, 16, None),
             ("conv5 32x32x3->64", 64, 32, 32, 3, 5, 1, 2, 64, None),
             ("conv3x3/2 32x32x64->128", 32, 32, 32, 64, 3, 2, 1, 128, "crop"),
             ("maxpool3/2 55x55x96", 8, 55, 55, 96, 3, 2, 0, None, None))


def without_direct(run):
    """``run`` with the direct kernels off for its duration. Layers remember their plans (:mod:`volnet.ops.memo`),
    so the memos are forgotten at each switch, both ways: a plan remembered with the kernels on would otherwise
    run with them off (each call then works its plans out again, about 10 us a CONV, on both sides)."""
    def off():
        direct.ENABLED = False
        memo.forget()
        try:
            run()
        finally:
            direct.ENABLED = True
            memo.forget()
    return off


def runners(torch, workload) -> dict:
    """``{pass: (volnet, torch)}`` callables for one workload."""
    _, N, H, W, D, F, S, P, K, fit = workload
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, D), dtype=np.float32)
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy())
    xg = xt.clone().requires_grad_(True)
    if K is None:
        dout = np.ones_like(pool_forward(x, F, S)[0])
        dt = torch.ones(dout.shape[0], dout.shape[3], *dout.shape[1:3])

        def both():
            pool_backward(dout, pool_forward(x, F, S)[1])

        return {"fwd": (lambda: pool_forward(x, F, S), lambda: torch.nn.functional.max_pool2d(xt, F, S)),
                "fwd+bwd": (both, lambda: torch.nn.functional.max_pool2d(xg, F, S).backward(dt))}
    w, b = rng.standard_normal((F, F, D, K), dtype=np.float32) * np.float32(0.1), np.zeros(K, np.float32)
    wt, bt = torch.tensor(w.transpose(3, 2, 0, 1).copy()), torch.tensor(b)
    wg, bg = wt.clone().requires_grad_(True), bt.clone().requires_grad_(True)
    dout = np.ones_like(conv_forward(x, w, b, S, P, fit=fit)[0])
    dt = torch.ones(dout.shape[0], dout.shape[3], *dout.shape[1:3])

    def both():
        conv_backward(dout, conv_forward(x, w, b, S, P, fit=fit)[1])

    return {"fwd": (lambda: conv_forward(x, w, b, S, P, fit=fit),
                    lambda: torch.nn.functional.conv2d(xt, wt, bt, stride=S, padding=P)),
            "fwd+bwd": (both, lambda: torch.nn.functional.conv2d(xg, wg, bg, stride=S, padding=P).backward(dt))}


def best_in_turn(calls: dict, rounds: int) -> dict:
    """Each callable's best time in ms over ``rounds`` rounds in which all take one turn each."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * min(t) for name, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="calls of each, taken in turn (default 40)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--unmeasured", action="store_true",
                        help="plan every use of the direct kernels on this host's instruction set, those "
                             "direct.MEASURED leaves out for it included: the measurement that decides whether it should")
    args = parser.parse_args(argv)
    if args.unmeasured:
        direct.MEASURED = {**direct.MEASURED, tiled.isa(): direct.USES}
    print(f"instruction set {tiled.isa()}; the direct kernels' uses planned: "
          f"{', '.join(direct.MEASURED.get(tiled.isa(), ())) or 'none'}")
    import threadpoolctl
    import torch

    net = bench_train.build("lenet")
    images, labels = bench_train.make_batch(64, net.input_shape)
    step = bench_train.volnet_step(net, images, labels)
    cases = [(wl[0], p, pair) for wl in WORKLOADS for p, pair in runners(torch, wl).items()]
    cases.append(("lenet step N=64", "step", (step, bench_train.torch_step(torch, bench_train.build("lenet"),
                                                                              images, labels))))
    print(f"{'workload':26} {'thr':>3} {'pass':8} {'before ms':>10} {'after ms':>9} {'torch ms':>9} {'after/torch':>11}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpoolctl.threadpool_limits(threads):
            for name, pass_, (volnet, theirs) in cases:
                t = best_in_turn({"after": volnet, "before": without_direct(volnet), "torch": theirs}, args.rounds)
                print(f"{name:26} {threads:>3} {pass_:8} {t['before']:10.2f} {t['after']:9.2f} {t['torch']:9.2f} "
                      f"{t['after'] / t['torch']:11.2f}", flush=True)


if __name__ == "__main__":
    main()
