"""Sliding a network over a larger image: the converted (fully convolutional) net vs a loop over crops.

Run from the repository root:

    .venv/bin/python benchmarks/bench_convert.py             # AlexNet-style CIFAR net, 64x64 images
    .venv/bin/python benchmarks/bench_convert.py --size 96 --repeat 5

The notes: converting FC layers to CONV layers lets one forward pass evaluate
the original network at every crop position of a larger image. This script
builds an unpadded ConvNet for 32x32x3 crops, converts it with
``volnet.convert.fc_to_conv`` for a larger image, checks that the score map
equals the crop-by-crop scores, and times both ways of computing it.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from volnet import build
from volnet.convert import fc_to_conv, score_map_geometry

from _common import compare_interleaved, configure_volnet, match_threads, print_environment, print_load

# No zero padding before the FC layers, so every crop sees exactly what the converted net sees.
NETWORK = ("INPUT[32x32x3] -> CONV5-32/P0 -> RELU -> POOL2 -> CONV5-64/P0 -> RELU -> POOL2 -> FC256 -> RELU -> FC10")


def crops_one_by_one(net, image, crop, stride, positions):
    """The score map the slow way: the original net on every crop, batched per row of positions."""
    (ch, cw), (sh, sw), (h, w) = crop, stride, positions
    rows = []
    for i in range(h):
        batch = np.stack([image[i * sh: i * sh + ch, j * sw: j * sw + cw] for j in range(w)])
        rows.append(net.forward(batch))
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="image height and width (default: 64)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed runs of each, taking turns, each after a warm-up run (default: 5)")
    args = parser.parse_args()

    configure_volnet()
    blas, threads = match_threads(None)
    print_environment(blas, threads, None, uses_torch=False)
    print_load()
    net = build(NETWORK)
    crop, stride = score_map_geometry(net)
    converted = fc_to_conv(net, (args.size, args.size, 3))
    positions = converted.output_shape[:2]
    image = np.random.default_rng(0).random((args.size, args.size, 3), dtype=np.float32)

    once = converted.forward(image[None])[0]
    looped = crops_one_by_one(net, image, crop, stride, positions)
    error = float(np.abs(once - looped).max())
    seconds = compare_interleaved({
        "converted": lambda: converted.forward(image[None]),
        "crops": lambda: crops_one_by_one(net, image, crop, stride, positions),
    }, rounds=args.repeat, calls=1)
    times = {name: 1e3 * statistics.median(s) for name, s in seconds.items()}
    print(f"\n{NETWORK}")
    print(f"image {args.size}x{args.size}x3: {positions[0]}x{positions[1]} crop positions "
          f"(crop {crop[0]}x{crop[1]}, stride {stride[0]}); max |difference| {error:.2e}")
    print(f"converted net, one forward pass: {times['converted']:8.1f} ms")
    print(f"original net, crop by crop:      {times['crops']:8.1f} ms")
    print(f"speed-up: {times['crops'] / times['converted']:.1f}x")


if __name__ == "__main__":
    main()
