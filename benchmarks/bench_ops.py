"""Time volnet's fast CONV and POOL kernels against PyTorch's on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/bench_ops.py            # full run
    .venv/bin/python benchmarks/bench_ops.py --quick    # smaller batches, fewer repeats

Both libraries run in this process on the same float32 data (NHWC for
volnet, the same values as NCHW tensors for torch, prepared outside the timed
region) with the same number of threads: torch is set to the thread count
that threadpoolctl reports for NumPy's BLAS. Each time is the median of
``--repeat`` runs after two warm-up runs, one library after the other.

FLOPs count 2 per multiply-add. A convolution's forward pass is
``2*N*H2*W2*K*F*F*D``; its backward pass (dx and dw) counts twice that, so
"fwd+bwd" is 3x the forward. Pooling has no multiply-adds: its "FLOPs" are
the F*F comparisons per output value, and its backward counts as the forward
again.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import volnet
from volnet.ops import conv_backward, conv_forward, pool_backward, pool_forward
from volnet.shapes import conv_output_size, pool_output_size

from _common import match_threads, median_ms, print_environment, print_load, to_nchw  # this folder's shared helpers

try:
    import torch
    import torch.nn.functional as tF
except ImportError:  # the table then shows volnet alone
    torch = None

DTYPE = np.float32


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

    def label(self) -> str:
        return f"{self.name} N={self.N}"


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


def print_header(blas: dict, threads: int, args) -> None:
    print(f"volnet {volnet.__version__} from {Path(volnet.__file__).parent}")
    print_environment(blas, threads, torch)
    print_load()
    print(f"dtype float32; median of {args.repeat} runs after 2 warm-ups; "
          f"FLOPs = 2 * multiply-adds (conv backward = 2x forward; "
          f"max-pool: F*F compares per output, backward = 1x forward)")
    print()


def format_row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def gflops(flops: float, ms: float | None) -> str:
    return "-" if ms is None else f"{flops / ms / 1e6:.3g}"


def run(workloads, repeat: int) -> list:
    """Time every workload and pass; rows of (label, pass, volnet ms, torch ms or None, FLOPs)."""
    rng = np.random.default_rng(0)
    rows = []
    for wl in workloads:
        data = make_data(wl, rng)
        ours = volnet_runners(wl, data)
        theirs = torch_runners(wl, data) if torch else {}
        for name in PASSES:
            flops = wl.forward_flops() * ((3 if wl.is_conv else 2) if name == "fwd+bwd" else 1)
            # One library at a time, not alternating: after a call, torch's OpenMP
            # threads and OpenBLAS's threads spin-wait for more work, and on 2
            # cores they take the CPU from the other library (measured: 2-5x
            # slower, erratic times when alternating).
            ours_ms = median_ms(ours[name], repeat)
            theirs_ms = median_ms(theirs[name], repeat) if torch else None
            rows.append((wl.label(), name, ours_ms, theirs_ms, flops))
    return rows


def print_table(rows) -> None:
    header = ("workload", "pass", "volnet ms", "torch ms", "volnet GFLOP/s", "torch GFLOP/s",
              "volnet/torch")
    widths = [max(len(header[0]), *(len(r[0]) for r in rows)), 7, 9, 8, 14, 13, 12]
    print(format_row(header, widths))
    print(format_row(["-" * w for w in widths], widths))
    for label, name, ours_ms, theirs_ms, flops in rows:
        print(format_row((
            label, name, f"{ours_ms:.2f}", "-" if theirs_ms is None else f"{theirs_ms:.2f}",
            gflops(flops, ours_ms), gflops(flops, theirs_ms),
            "-" if theirs_ms is None else f"{ours_ms / theirs_ms:.2f}",
        ), widths))


def quick(wl: Workload) -> Workload:
    """The same workload on a batch 8x smaller."""
    return Workload(**{**wl.__dict__, "N": max(1, wl.N // 8)})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per case, of which the median is shown; default 7 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="batches 8x smaller, 3 repeats")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    blas, threads = match_threads(torch)
    print_header(blas, threads, args)
    workloads = [quick(wl) for wl in WORKLOADS] if args.quick else WORKLOADS
    print_table(run(workloads, args.repeat))


if __name__ == "__main__":
    main()
