"""Time volnet's fast CONV and POOL kernels against PyTorch's on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/bench_ops.py            # full run (``make bench``)
    .venv/bin/python benchmarks/bench_ops.py --quick    # smaller batches, fewer rounds

Both libraries run in this process on the same float32 data (NHWC for
volnet, the same values as NCHW tensors for torch, prepared outside the timed
region) with the same number of threads: torch is set to the thread count
that threadpoolctl reports for NumPy's BLAS. The libraries take turns in
``--rounds`` rounds of one warm-up and ``--calls`` timed calls each
(``_common.compare_interleaved``); each time is the median of all timed calls.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import volnet
from volnet.ops import conv_backward, conv_forward, pool_backward, pool_forward
from volnet.shapes import conv_output_size, pool_output_size

# this folder's shared helpers
from _common import (Results, cell, compare_interleaved, match_threads, print_environment, print_load, timing_row,
                     to_nchw)

try:
    import torch
    import torch.nn.functional as tF
except ImportError:  # the table then shows volnet alone
    torch = None

DTYPE = np.float32
GEMM_SIZE = 2048


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

    @property
    def is_conv(self) -> bool:
        return self.K is not None

    def out_hw(self) -> tuple[int, int]:
        if self.is_conv:
            return (conv_output_size(self.H, self.F, self.S, self.P),
                    conv_output_size(self.W, self.F, self.S, self.P))
        return pool_output_size(self.H, self.F, self.S), pool_output_size(self.W, self.F, self.S)

    def forward_flops(self) -> int:
        Ho, Wo = self.out_hw()
        if self.is_conv:
            return 2 * self.N * Ho * Wo * self.K * self.F * self.F * self.D
        return self.N * Ho * Wo * self.D * self.F * self.F

WORKLOADS = (
    Workload("conv3x3 32x32x3->32", N=64, H=32, W=32, D=3, F=3, S=1, P=1, K=32),
    Workload("conv3x3 32x32x32->32", N=64, H=32, W=32, D=32, F=3, S=1, P=1, K=32),
    Workload("conv3x3 16x16x64->64", N=64, H=16, W=16, D=64, F=3, S=1, P=1, K=64),
    Workload("conv3x3 8x8x128->128", N=64, H=8, W=8, D=128, F=3, S=1, P=1, K=128),
    Workload("conv11/4 227x227x3->96", N=8, H=227, W=227, D=3, F=11, S=4, P=0, K=96),
    Workload("maxpool2/2 32x32x64", N=64, H=32, W=32, D=64, F=2, S=2),
    Workload("maxpool3/2 55x55x96", N=8, H=55, W=55, D=96, F=3, S=2),
)
PASSES = ("fwd", "fwd+bwd")


def make_data(wl: Workload, rng: np.random.Generator) -> dict:
    """Input, weights, biases and an upstream gradient for one workload, NHWC, float32."""
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
            return conv_forward(x, w, b, stride=wl.S, pad=wl.P)

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


def torch_runners(wl: Workload, data: dict) -> dict:
    """``{pass: callable}`` running torch.nn.functional on NCHW copies of the same data."""
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


def print_header(blas: dict, threads: int, args, gemm: float) -> None:
    print(f"volnet {volnet.__version__} from {Path(volnet.__file__).parent}")
    print_environment(blas, threads, torch)
    print_load()
    print(f"NumPy float32 GEMM {GEMM_SIZE}^3: {gemm:.1f} GFLOP/s")
    print(f"dtype float32; median of {args.rounds} rounds x {args.calls} calls, each round after 1 warm-up; "
          f"FLOPs = 2 * multiply-adds (conv backward = 2x forward; "
          f"max-pool: F*F compares per output, backward = 1x forward)")
    print()


def format_row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def gflops(flops: float, ms: float | None) -> float | None:
    return None if ms is None else flops / ms / 1e6


def run(workloads, rounds: int, calls: int, gemm: float) -> list:
    """Time every workload and pass; one row (a dict) each, with GFLOP/s and volnet's % of NumPy's GEMM."""
    rng = np.random.default_rng(0)
    rows = []
    for wl in workloads:
        data = make_data(wl, rng)
        ours = volnet_runners(wl, data)
        theirs = torch_runners(wl, data) if torch else {}
        for name in PASSES:
            flops = wl.forward_flops() * ((3 if wl.is_conv else 2) if name == "fwd+bwd" else 1)
            fns = {"volnet": ours[name], **({"torch": theirs[name]} if torch else {})}
            row = {"workload": wl.name, "batch": wl.N, "pass": name, "flops": flops,
                   **timing_row(compare_interleaved(fns, rounds, calls))}
            row["volnet_gflops"] = gflops(flops, row["volnet_ms"])
            row["torch_gflops"] = gflops(flops, row["torch_ms"])
            row["gemm_percent"] = 100 * row["volnet_gflops"] / gemm
            rows.append(row)
    return rows


def print_table(rows) -> None:
    header = ("workload", "pass", "volnet ms", "torch ms", "volnet GFLOP/s", "torch GFLOP/s",
              "volnet/torch", "% of GEMM")
    labels = [f"{r['workload']} N={r['batch']}" for r in rows]
    widths = [max(len(header[0]), *map(len, labels)), 7, 9, 8, 14, 13, 12, 9]
    print(format_row(header, widths))
    print(format_row(["-" * w for w in widths], widths))
    for label, r in zip(labels, rows):
        print(format_row((
            label, r["pass"], cell(r["volnet_ms"], ".2f"), cell(r["torch_ms"], ".2f"),
            cell(r["volnet_gflops"], ".3g"), cell(r["torch_gflops"], ".3g"), cell(r["ratio"], ".2f"),
            cell(r["gemm_percent"], ".0f"),
        ), widths))


def quick(wl: Workload) -> Workload:
    """The same workload on a batch 8x smaller."""
    return Workload(**{**wl.__dict__, "N": max(1, wl.N // 8)})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds in which the libraries take turns; default 10 (2 with --quick)")
    parser.add_argument("--calls", type=int, default=None,
                        help="timed calls per library and round; default 3 (2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="batches 8x smaller, 2 rounds of 2 calls")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 10
    if args.calls is None:
        args.calls = 2 if args.quick else 3
    gemm_calls = 3 if args.quick else 5
    results = Results("bench_ops")
    blas, threads = match_threads(torch)
    gemm = gemm_gflops(gemm_calls)
    print_header(blas, threads, args, gemm)
    workloads = [quick(wl) for wl in WORKLOADS] if args.quick else WORKLOADS
    rows = run(workloads, args.rounds, args.calls, gemm)
    print_table(rows)
    print_load()
    results.write({"rounds": args.rounds, "calls": args.calls, "warmup_calls_per_round": 1, "threads": threads,
                   "statistic": "median of all timed calls (min kept as *_min_ms)", "quick": args.quick,
                   "dtype": "float32"},
                  rows, gemm={"size": GEMM_SIZE, "calls": gemm_calls, "gflops": gemm})


if __name__ == "__main__":
    main()
