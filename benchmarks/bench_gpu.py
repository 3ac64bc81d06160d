"""Training steps of resnet18-cifar and vgg16-cifar on a CUDA GPU through volnet's PyTorch engine.

For each architecture:

* **speed**: images/s of full training steps (host-to-GPU copy of the batch,
  forward, loss, backward, SGD with momentum), after warm-up steps, timed
  with ``torch.cuda.synchronize()`` around the timed block;
* **parity**: one training step of the same net from the same weights on
  the same batch, in float64, on the GPU (PyTorch engine) and on the CPU
  (volnet's NumPy engine), Dropout off (the engines draw different masks):
  the largest difference of any weight after the step, beside the largest
  change the step made.

Run on a machine with an NVIDIA GPU and a CUDA build of PyTorch::

    python benchmarks/bench_gpu.py                     # both nets, batch 128
    python benchmarks/bench_gpu.py --arch vgg16-cifar --batch 256 --steps 50

Without CUDA it says so and exits with status 1 (``--device cpu`` runs the
same code on the CPU, to check the script itself).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

ARCHES = ("resnet18-cifar", "vgg16-cifar")


def _net(arch: str, dtype: str, dropout: bool = True):
    """The zoo net in ``dtype``; ``dropout=False`` sets every Dropout's p to 0 (the two engines draw
    their masks from different generators, so a step with dropout is compared without it)."""
    from volnet import Sequential
    from volnet.zoo import build_named

    config = build_named(arch, seed=0).get_config()
    layers = [{**layer, "p": 0.0} if layer["type"] == "Dropout" and not dropout else layer
              for layer in config["layers"]]
    return Sequential.from_config({**config, "layers": layers, "dtype": dtype})


def _optimizer(net):
    from volnet.optim import make_optimizer

    return make_optimizer("momentum", net.params(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def _batch(n: int, shape, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, classes, n)


def speed(arch: str, device: str, batch: int, steps: int, warmup: int = 3) -> float:
    """Images/s of training steps in float32 on ``device``."""
    import torch

    from volnet.interop.torch_engine import TorchEngine

    net = _net(arch, "float32")
    engine = TorchEngine(device)
    engine.start(net, _optimizer(net))
    images, labels = _batch(batch, net.input_shape, net.output_shape[-1])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        engine.forward(images, labels, "softmax")
        engine.update()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        engine.forward(images, labels, "softmax")
        engine.update()
    sync()
    return batch * steps / (time.perf_counter() - started)


def parity(arch: str, device: str, batch: int = 8) -> tuple[float, float]:
    """``(largest weight difference, largest weight change)`` after one float64 step: device vs NumPy engine."""
    import torch

    from volnet.interop.torch_engine import TorchEngine
    from volnet.train.engines import Engine
    from volnet.train.restore import network_tensors

    if device == "cuda":  # full-precision products on the GPU, as on the CPU
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    before = network_tensors(_net(arch, "float64", dropout=False))
    after = []
    for engine in (TorchEngine(device), Engine()):
        net = _net(arch, "float64", dropout=False)
        engine.start(net, _optimizer(net))
        images, labels = _batch(batch, net.input_shape, net.output_shape[-1], seed=1)
        engine.forward(images, labels, "softmax")
        engine.update()
        engine.pull()
        after.append(network_tensors(net))
    gpu, cpu = after
    difference = max(float(np.abs(gpu[k] - cpu[k]).max()) for k in cpu)
    change = max(float(np.abs(cpu[k] - before[k]).max()) for k in cpu)
    return difference, change


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=ARCHES, action="append", help="default: both")
    parser.add_argument("--batch", type=int, default=128, help="images per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: check the script itself")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_gpu: PyTorch is not installed; this benchmark needs a CUDA build of PyTorch and an NVIDIA GPU",
              file=sys.stderr)
        return 1
    if args.device == "cuda" and not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"bench_gpu: no CUDA GPU: PyTorch {torch.__version__} ({build}) sees none. Run it on a machine "
              "with an NVIDIA GPU and a CUDA build of PyTorch (--device cpu runs the script on the CPU).",
              file=sys.stderr)
        return 1
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"volnet PyTorch engine on {where}, torch {torch.__version__}, batch {args.batch}, float32")
    for arch in args.arch or ARCHES:
        rate = speed(arch, args.device, args.batch, args.steps)
        difference, change = parity(arch, args.device)
        print(f"{arch:16s} {rate:10,.0f} images/s   one float64 step vs the NumPy engine on the CPU: "
              f"largest weight difference {difference:.2e} (the step changed weights by up to {change:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
