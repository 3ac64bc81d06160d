"""Time inference (forward only) of the CIFAR-10 reference net in volnet, PyTorch and onnxruntime on the CPU.

Run from the repository root:

    .venv/bin/python benchmarks/bench_infer.py                                # batches 1 and 256
    .venv/bin/python benchmarks/bench_infer.py --batches 1 32 --rounds 2 --calls 2

The network is ``volnet.zoo.cifar_reference(seed=0)``, as in bench_train.py.
volnet runs ``net.forward(x)`` (``train=False``: no layer keeps a cache);
PyTorch runs ``volnet.interop.to_torch`` of the same network (same weights)
in eval mode under ``torch.inference_mode()``, on an NCHW copy of the batch
prepared outside the timed region, with the same thread count (torch is set
to NumPy's BLAS thread count). The libraries take turns in ``--rounds``
rounds of one untimed and ``--calls`` timed forward passes each
(``_common.compare_interleaved``); images/s is the batch size over the
median time, and the ratio is volnet's time over torch's (the target: at
most 1). onnxruntime, when installed, runs ``volnet.export.build_onnx`` of
the same network (NHWC input, the batch volnet gets) in a session with
as many intra-op threads; its ratio is volnet's time over onnxruntime's.
After the volnet runs the script counts the layers that still hold
a forward cache, which should be none. The table is also written to
``benchmarks/results/<machine kind>/bench_infer.json``.
"""

from __future__ import annotations

import argparse
import statistics

from volnet.interop import to_torch
from volnet.zoo import cifar_reference

# this folder's shared helpers, and the training benchmark's fixed random batch
from _common import Results, cell, compare_interleaved, print_load, start, timing_row, to_nchw
from bench_train import make_batch

try:
    import torch
except ImportError:  # volnet's numbers alone are shown
    torch = None

try:
    import onnxruntime
except ImportError:  # no onnxruntime column
    onnxruntime = None


def torch_forward(model, x):
    """The PyTorch forward pass, without autograd's bookkeeping."""
    def forward():
        with torch.inference_mode():
            return model(x)

    return forward


def ort_session(net, threads: int):
    """An onnxruntime CPU session of ``net`` exported by volnet, with ``threads`` intra-op threads."""
    from volnet.export import build_onnx

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(build_onnx(net).SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def ort_columns(times: dict, batch: int, volnet_ms: float) -> dict:
    """onnxruntime's median and min ms, images/s and volnet's time over it (None without onnxruntime)."""
    seconds = times.get("onnxruntime")
    if not seconds:
        return {"ort_ms": None, "ort_min_ms": None, "ort_images_per_s": None, "ratio_ort": None}
    median = statistics.median(seconds)
    return {"ort_ms": 1e3 * median, "ort_min_ms": 1e3 * min(seconds), "ort_images_per_s": batch / median,
            "ratio_ort": volnet_ms / (1e3 * median)}


def layers_with_cache(net) -> int:
    """How many layers (nested ones included) hold a forward cache (``Layer._keep`` stores it in ``_cache``)."""
    return sum(layer._cache is not None for top in net.layers for _, layer in top.named_layers())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256], help="batch sizes to time")
    parser.add_argument("--rounds", type=int, default=6, help="rounds in which the libraries take turns")
    parser.add_argument("--calls", type=int, default=3, help="timed forward passes per library and round")
    args = parser.parse_args(argv)

    results = Results("bench_infer")
    blas, threads = start(torch)
    net = cifar_reference(seed=0)
    model = to_torch(net).eval() if torch else None
    session = ort_session(net, threads) if onnxruntime else None
    print(f"cifar-ref, {net.num_params:,} parameters; inference, float32; median of "
          f"{args.rounds} rounds x {args.calls} forward passes, each round after 1 warm-up\n")

    print(f"{'batch':>5}  {'volnet img/s':>12}  {'torch img/s':>11}  {'ORT img/s':>10}  {'volnet ms':>9}  "
          f"{'torch ms':>8}  {'ORT ms':>7}  {'volnet/torch':>12}  {'volnet/ORT':>10}")
    rows = []
    for batch in args.batches:
        images, _ = make_batch(batch)
        passes = {"volnet": lambda: net.forward(images, train=False)}
        if torch:
            passes["torch"] = torch_forward(model, to_nchw(images, torch))
        if session:
            passes["onnxruntime"] = lambda images=images: session.run(None, {"input": images})
        times = compare_interleaved(passes, args.rounds, args.calls)
        row = {"batch": batch, **timing_row(times, batch)}
        row.update(ort_columns(times, batch, row["volnet_ms"]))
        rows.append(row)
        print(f"{batch:>5}  {row['volnet_images_per_s']:12.1f}  {cell(row['torch_images_per_s'], '.1f'):>11}  "
              f"{cell(row['ort_images_per_s'], '.1f'):>10}  {row['volnet_ms']:9.2f}  "
              f"{cell(row['torch_ms'], '.2f'):>8}  "
              f"{cell(row['ort_ms'], '.2f'):>7}  {cell(row['ratio'], '.2f'):>12}  {cell(row['ratio_ort'], '.2f'):>10}")

    cached = layers_with_cache(net)
    print(f"\nlayers holding a forward cache after the volnet runs: {cached} (expected 0)")
    print_load()
    results.write({"rounds": args.rounds, "calls": args.calls, "warmup_calls_per_round": 1, "threads": threads,
                   "statistic": "median of all timed calls (min kept as *_min_ms)", "dtype": "float32",
                   "network": "cifar_reference(seed=0)",
                   "onnxruntime": onnxruntime.__version__ if onnxruntime else None,
                   "ratio_ort": "volnet ms / onnxruntime ms (volnet.export.build_onnx, NHWC input)"},
                  rows, layers_with_cache=cached)


if __name__ == "__main__":
    main()
