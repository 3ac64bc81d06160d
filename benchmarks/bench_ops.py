"""Time volnet's fast CONV and POOL kernels against PyTorch's on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/bench_ops.py            # full run (``make bench``)
    .venv/bin/python benchmarks/bench_ops.py --quick    # smaller batches, fewer rounds
    .venv/bin/python benchmarks/bench_ops.py --workloads "conv5 16x16x64->192" --no-fresh

The workloads (:data:`WORKLOADS`) are the CONV layers of the zoo's nets at
their CIFAR-variant sizes: lenet's two 5x5 CONVs (28x28x1 input),
alexnet-cifar's 5x5 and 3x3 ones, resnet18-cifar's 3x3, strided 3x3 and
strided 1x1 (projection) ones, googlenet-cifar's 1x1 ones, and the 3x3
layers of the CIFAR-10 reference net; then the ImageNet first layers of
resnet18 (7x7/2) and alexnet (11x11/4, and the paper's 227x227x3->96), and
two max-pools. Strided CONVs that do not tile their input floor as torch
does (``fit="crop"``).

Both libraries get the same float32 data (NHWC for volnet, the same values
as NCHW tensors for torch, prepared outside the timed region, drawn from a
generator seeded 0 for every workload) and the same number of threads:
torch is set to the thread count that threadpoolctl reports for NumPy's
BLAS. Every workload and pass is compared two ways (``_common``):

* in turn, in this process: the libraries take turns in up to ``--rounds``
  rounds of one warm-up and up to ``--calls`` timed calls each
  (``_common.compare_within_budget``). A heavy workload gets fewer calls,
  then fewer rounds (never fewer than 3 rounds of 1 call), so that it takes
  about ``--budget`` seconds; every row records the rounds and calls it got;
* in fresh processes (unless ``--no-fresh``): each library alone in a new
  interpreter (this script with ``--child``, which builds the same data),
  one warm-up and as many timed calls as the first way took each library.

Each time is the median of all timed calls.

FLOPs count 2 per multiply-add. A convolution's forward pass is
``2*N*H2*W2*K*F*F*D``; its backward pass (dx and dw) counts twice that, so
"fwd+bwd" is 3x the forward. Pooling has no multiply-adds: its "FLOPs" are
the F*F comparisons per output value, and its backward counts as the forward
again. "% of GEMM" compares volnet's GFLOP/s with NumPy's own float32 GEMM
(2048x2048 by 2048x2048, median of 5 calls after a warm-up, 3 with ``--quick``)
measured at the start of the run: the ceiling for an im2col convolution.

The table is also written to ``benchmarks/results/<machine kind>/bench_ops.json``.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import volnet
from volnet.ops import conv_backward, conv_forward, pool_backward, pool_forward
from volnet.ops.conv import plan_conv
from volnet.ops.pool import pool_plan
from volnet.ops.window import geometry
from volnet.shapes import conv_output_size, pool_output_size

# this folder's shared helpers
from _common import (Results, Table, add_comparison_arguments, cell, child_settings, compare_fresh, compare_interleaved,
                     compare_within_budget, configure_volnet, fresh_columns, match_threads, optional_torch,
                     print_environment, print_fresh_processes, print_load, report_alone, timing_row, to_nchw,
                     WARMUP_SECONDS)

DTYPE = np.float32
GEMM_SIZE = 2048
PLAN, QUICK_PLAN = (10, 3), (2, 2)  # most rounds and timed calls per row: by default, and with --quick


@dataclass(frozen=True)
class Workload:
    """One benchmark case: a conv (K filters) or a max-pool (K is None) on an N x H x W x D batch."""

    name: str
    N: int
    H: int
    W: int
    D: int
    F: int
    S: int
    P: int = 0
    K: int | None = None
    fit: str | None = None  # "crop" floors a stride that does not tile the input, as torch does

    @property
    def is_conv(self) -> bool:
        return self.K is not None

    def out_hw(self) -> tuple[int, int]:
        if self.is_conv:
            return (conv_output_size(self.H, self.F, self.S, self.P, fit=self.fit),
                    conv_output_size(self.W, self.F, self.S, self.P, fit=self.fit))
        return pool_output_size(self.H, self.F, self.S), pool_output_size(self.W, self.F, self.S)

    def forward_flops(self) -> int:
        Ho, Wo = self.out_hw()
        if self.is_conv:
            return 2 * self.N * Ho * Wo * self.K * self.F * self.F * self.D
        return self.N * Ho * Wo * self.D * self.F * self.F

WORKLOADS = (
    # the CIFAR-10 reference net's 3x3 CONVs (and one deeper 3x3)
    Workload("conv3x3 32x32x3->32", N=64, H=32, W=32, D=3, F=3, S=1, P=1, K=32),
    Workload("conv3x3 32x32x32->32", N=64, H=32, W=32, D=32, F=3, S=1, P=1, K=32),
    Workload("conv3x3 16x16x64->64", N=64, H=16, W=16, D=64, F=3, S=1, P=1, K=64),
    Workload("conv3x3 8x8x128->128", N=64, H=8, W=8, D=128, F=3, S=1, P=1, K=128),
    # lenet (28x28x1)
    Workload("conv5 28x28x1->16", N=64, H=28, W=28, D=1, F=5, S=1, P=2, K=16),
    Workload("conv5 14x14x16->32", N=64, H=14, W=14, D=16, F=5, S=1, P=2, K=32),
    # alexnet-cifar
    Workload("conv5 32x32x3->64", N=64, H=32, W=32, D=3, F=5, S=1, P=2, K=64),
    Workload("conv5 16x16x64->192", N=64, H=16, W=16, D=64, F=5, S=1, P=2, K=192),
    Workload("conv3x3 8x8x192->384", N=64, H=8, W=8, D=192, F=3, S=1, P=1, K=384),
    # resnet18-cifar
    Workload("conv3x3 32x32x64->64", N=32, H=32, W=32, D=64, F=3, S=1, P=1, K=64),
    Workload("conv3x3/2 32x32x64->128", N=32, H=32, W=32, D=64, F=3, S=2, P=1, K=128, fit="crop"),
    Workload("conv1x1/2 32x32x64->128", N=32, H=32, W=32, D=64, F=1, S=2, P=0, K=128, fit="crop"),
    Workload("conv3x3 4x4x512->512", N=32, H=4, W=4, D=512, F=3, S=1, P=1, K=512),
    # googlenet-cifar's 1x1 CONVs
    Workload("conv1x1 32x32x192->64", N=64, H=32, W=32, D=192, F=1, S=1, P=0, K=64),
    # ImageNet first layers: resnet18's stem, alexnet's (torchvision's and the paper's)
    Workload("conv7/2 224x224x3->64", N=8, H=224, W=224, D=3, F=7, S=2, P=3, K=64, fit="crop"),
    Workload("conv11/4 224x224x3->64", N=8, H=224, W=224, D=3, F=11, S=4, P=2, K=64, fit="crop"),
    Workload("conv11/4 227x227x3->96", N=8, H=227, W=227, D=3, F=11, S=4, P=0, K=96),
    Workload("maxpool2/2 32x32x64", N=64, H=32, W=32, D=64, F=2, S=2),
    Workload("maxpool3/2 55x55x96", N=8, H=55, W=55, D=96, F=3, S=2),
)
PASSES = ("fwd", "fwd+bwd")


def make_data(wl: Workload) -> dict:
    """Input, weights, biases and an upstream gradient for one workload, NHWC, float32, drawn from a
    generator seeded 0 (the same in a fresh process)."""
    rng = np.random.default_rng(0)
    Ho, Wo = wl.out_hw()
    out_depth = wl.K if wl.is_conv else wl.D
    data = {
        "x": rng.standard_normal((wl.N, wl.H, wl.W, wl.D), dtype=DTYPE),
        "dout": rng.standard_normal((wl.N, Ho, Wo, out_depth), dtype=DTYPE),
    }
    if wl.is_conv:
        data["w"] = rng.standard_normal((wl.F, wl.F, wl.D, wl.K), dtype=DTYPE) * DTYPE(0.1)
        data["b"] = rng.standard_normal(wl.K, dtype=DTYPE)
    return data


def volnet_runners(wl: Workload, data: dict) -> dict:
    """``{pass: callable}`` running volnet's fast kernels."""
    x, dout = data["x"], data["dout"]
    if wl.is_conv:
        w, b = data["w"], data["b"]

        def forward():
            return conv_forward(x, w, b, stride=wl.S, pad=wl.P, fit=wl.fit)

        def forward_backward():
            _, cache = forward()
            return conv_backward(dout, cache)
    else:
        def forward():
            return pool_forward(x, wl.F, wl.S, "max")

        def forward_backward():
            _, cache = forward()
            return pool_backward(dout, cache)
    return {"fwd": forward, "fwd+bwd": forward_backward}


def torch_runners(torch, wl: Workload, data: dict) -> dict:
    """``{pass: callable}`` running torch.nn.functional on NCHW copies of the same data."""
    tF = torch.nn.functional

    def nchw(a, requires_grad=False):
        return to_nchw(a, torch).requires_grad_(requires_grad)

    x, dout = nchw(data["x"]), nchw(data["dout"])
    x_grad = nchw(data["x"], requires_grad=True)
    if wl.is_conv:
        w = torch.from_numpy(np.ascontiguousarray(data["w"].transpose(3, 2, 0, 1)))
        b = torch.from_numpy(data["b"])
        w_grad, b_grad = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
        leaves = (x_grad, w_grad, b_grad)

        def forward():
            return tF.conv2d(x, w, b, stride=wl.S, padding=wl.P)

        def forward_on_leaves():
            return tF.conv2d(x_grad, w_grad, b_grad, stride=wl.S, padding=wl.P)
    else:
        leaves = (x_grad,)

        def forward():
            return tF.max_pool2d(x, wl.F, wl.S)

        def forward_on_leaves():
            return tF.max_pool2d(x_grad, wl.F, wl.S)

    def forward_backward():
        for leaf in leaves:
            leaf.grad = None
        forward_on_leaves().backward(dout)

    return {"fwd": forward, "fwd+bwd": forward_backward}


def gemm_gflops(calls: int) -> float:
    """GFLOP/s of NumPy's float32 matrix product of two GEMM_SIZE x GEMM_SIZE matrices, median of ``calls``."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=DTYPE) for _ in range(2))
    out = np.empty_like(a)
    seconds = compare_interleaved({"gemm": lambda: np.matmul(a, b, out=out)}, rounds=1, calls=calls)["gemm"]
    return 2 * GEMM_SIZE**3 / statistics.median(seconds) / 1e9


def print_header(blas: dict, threads: int, args, gemm: float, torch) -> None:
    print(f"volnet {volnet.__version__} from {Path(volnet.__file__).parent}")
    print_environment(blas, threads, torch)
    print_load()
    print(f"NumPy float32 GEMM {GEMM_SIZE}^3: {gemm:.1f} GFLOP/s")
    print(f"dtype float32; in turn: median of up to {args.rounds} rounds x {args.calls} calls, each round after "
          f"{WARMUP_SECONDS:g} s of warm-up calls, about {args.budget:g} s per row; fresh processes: "
          f"{'1 warm-up, then as many calls' if args.fresh else 'skipped'}; FLOPs = 2 * multiply-adds "
          f"(conv backward = 2x forward; max-pool: F*F compares per output, backward = 1x forward)")
    print()


def gflops(flops: float, ms: float | None) -> float | None:
    return None if ms is None else flops / ms / 1e6


def plan_label(wl: Workload) -> str:
    """The algorithms volnet runs the workload with, as its kernels choose them (called on their own, with
    NumPy's BLAS threads): a CONV's forward/dw/dx (:func:`volnet.ops.conv.plan_conv`), a pool's kernel."""
    if not wl.is_conv:
        return pool_plan("max", DTYPE)
    plan = plan_conv(geometry((wl.N, wl.H, wl.W, wl.D), wl.F, wl.S, wl.P, fit=wl.fit), wl.K, DTYPE)
    return f"{plan.forward}/{plan.weight_gradient}/{plan.input_gradient}"


def pass_flops(wl: Workload, name: str) -> int:
    """FLOPs of one pass: a conv's fwd+bwd is 3x its forward, a pool's 2x."""
    return wl.forward_flops() * ((3 if wl.is_conv else 2) if name == "fwd+bwd" else 1)


def child_case(wl: Workload, name: str, quick_run: bool) -> list:
    """The options that name one workload and pass to this script run with ``--child``."""
    return ["--workloads", wl.name, "--passes", name, *(["--quick"] if quick_run else [])]


def compare(wl: Workload, name: str, fns: dict, args, gemm: float) -> tuple[dict, dict]:
    """One row (a dict) of one workload and pass: both ways' times, GFLOP/s and volnet's % of NumPy's GEMM;
    and the fresh processes' views (empty with ``--no-fresh``)."""
    times, rounds, calls = compare_within_budget(fns, args.budget, args.rounds, args.calls)
    flops = pass_flops(wl, name)
    row = {"workload": wl.name, "batch": wl.N, "pass": name, "plan": plan_label(wl), "flops": flops,
           "rounds": rounds, "calls": calls, **timing_row(times)}
    fresh, views = (compare_fresh("bench_ops", child_case(wl, name, args.quick), rounds * calls, list(fns))
                    if args.fresh else ({}, {}))
    row.update(timing_row(fresh, way="_fresh"))
    row["volnet_gflops"] = gflops(flops, row["volnet_ms"])
    row["torch_gflops"] = gflops(flops, row["torch_ms"])
    row["gemm_percent"] = 100 * row["volnet_gflops"] / gemm
    return row, views


def workload_label(name: str, batch: int) -> str:
    return f"{name} N={batch}"


TABLE = Table((  # the first column is widened to fit the labels of the run's workloads
    ("workload", 0, lambda r: workload_label(r["workload"], r["batch"])),
    ("pass", 7, lambda r: r["pass"]),
    ("volnet fwd/dw/dx", 16, lambda r: r.get("plan", "-")),
    ("volnet ms", 9, lambda r: cell(r["volnet_ms"], ".2f")),
    ("torch ms", 8, lambda r: cell(r["torch_ms"], ".2f")),
    ("volnet GFLOP/s", 14, lambda r: cell(r["volnet_gflops"], ".3g")),
    ("% of GEMM", 9, lambda r: cell(r["gemm_percent"], ".0f")),
    ("volnet/torch", 12, lambda r: cell(r["ratio"], ".2f")),
    *fresh_columns(".2f"),
), left=2)


def quick(wl: Workload) -> Workload:
    """The same workload on a batch 8x smaller."""
    return replace(wl, N=max(1, wl.N // 8))


def child(args) -> None:
    """``--child``: time one library alone on the one workload and pass named, in this fresh process."""
    torch = child_settings(args.child)
    (wl,), (name,) = args.workloads, args.passes
    data = make_data(wl)
    runners = volnet_runners(wl, data) if args.child == "volnet" else torch_runners(torch, wl, data)
    report_alone(args.child, runners[name], args.calls, torch)


def parse(argv) -> argparse.Namespace:
    """The command line, with the defaults that depend on ``--quick`` filled in and workload names resolved."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_comparison_arguments(parser, *PLAN, quick=QUICK_PLAN)
    parser.add_argument("--quick", action="store_true", help="batches 8x smaller, at most 2 rounds of 2 calls")
    parser.add_argument("--workloads", nargs="+", metavar="NAME", choices=[wl.name for wl in WORKLOADS],
                        help="time these workloads only (default: all)")
    parser.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES), help="passes to time")
    args = parser.parse_args(argv)
    rounds, calls = QUICK_PLAN if args.quick else PLAN
    args.rounds = rounds if args.rounds is None else args.rounds
    args.calls = calls if args.calls is None else args.calls
    chosen = [wl for wl in WORKLOADS if args.workloads is None or wl.name in args.workloads]
    args.workloads = [quick(wl) for wl in chosen] if args.quick else chosen
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.child:
        return child(args)
    configure_volnet()
    torch = optional_torch()
    gemm_calls = 3 if args.quick else 5
    results = Results("bench_ops")
    blas, threads = match_threads(torch)
    gemm = gemm_gflops(gemm_calls)
    print_header(blas, threads, args, gemm, torch)
    table = TABLE.widened(max(len(workload_label(wl.name, wl.N)) for wl in args.workloads))
    table.print_heading()
    rows, views = [], {}
    for wl in args.workloads:
        data = make_data(wl)
        runners = {"volnet": volnet_runners(wl, data), **({"torch": torch_runners(torch, wl, data)} if torch else {})}
        for name in args.passes:
            row, row_views = compare(wl, name, {library: runners[library][name] for library in runners}, args, gemm)
            views.update(row_views)
            rows.append(row)
            table.print_row(row)
    print()
    print_fresh_processes(views)
    print_load()
    results.write({"rounds": args.rounds, "calls": args.calls, "budget_s": args.budget, "fresh": args.fresh,
                   "warmup_s": WARMUP_SECONDS,
                   "threads": threads, "quick": args.quick, "dtype": "float32",
                   "statistic": "median of all timed calls (min kept as *_min_ms); rounds and calls per row"},
                  rows, gemm={"size": GEMM_SIZE, "calls": gemm_calls, "gflops": gemm}, fresh_processes=views)


if __name__ == "__main__":
    main()
