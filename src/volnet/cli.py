"""The ``volnet`` command. Argument parsing and printing only; the work is in the library."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .shapes import ShapeError


def seed_cifar_layout(input_shape, classes: int = 10):
    """The notes' first example, ``INPUT -> CONV -> RELU -> POOL -> FC``, with 12 filters.

    CONV F=5, P=2 keeps the spatial size (32x32x3 -> 32x32x12 on CIFAR-10;
    28x28x1 -> 28x28x12 on MNIST), POOL 2x2/2 halves it, FC gives the scores.
    """
    from .layers import FC, Conv2D, MaxPool, ReLU
    from .net import Sequential

    return Sequential([Conv2D(K=12, F=5, P=2), ReLU(), MaxPool(F=2, S=2), FC(classes)], input_shape=input_shape)


def cmd_demo(args) -> int:
    from .data import load
    from .optim import SGD
    from .train import evaluate, fit

    train, test = load("mnist5k", "train"), load("mnist5k", "test")
    print(f"data: bundled MNIST-5k, {len(train)} training and {len(test)} test images of 28x28x1")
    net = seed_cifar_layout(train.images.shape[1:], len(train.classes))
    print(net.summary())
    optimizer = SGD(net.params(), lr=args.lr, momentum=args.momentum)

    def report(stats):
        _, accuracy = evaluate(net, test.images, test.labels)
        print(f"epoch {stats.epoch}/{args.epochs}  loss {stats.train_loss:.4f}  train acc {stats.train_accuracy:.3f}"
              f"  test acc {accuracy:.3f}  {stats.images_per_second:,.0f} img/s  {stats.seconds:.1f}s", flush=True)

    fit(net, train.images, train.labels, optimizer, epochs=args.epochs, batch_size=args.batch_size,
        seed=args.seed, on_epoch=report)
    loss, accuracy = evaluate(net, test.images, test.labels)
    print(f"test accuracy: {accuracy:.2%} (loss {loss:.4f}) on {len(test)} held-out images")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="volnet", description="ConvNets on 3-D activation volumes, in NumPy.")
    parser.add_argument("--version", action="version", version=f"volnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="train the notes' INPUT -> CONV -> RELU -> POOL -> FC net on bundled digits",
                          description="Train INPUT[28x28x1] -> CONV(K=12,F=5,P=2) -> RELU -> POOL2 -> FC10 on the "
                                      "bundled MNIST-5k digits with SGD + momentum, and print test accuracy.")
    demo.add_argument("--epochs", type=int, default=8, help="passes over the training set (default: 8)")
    demo.add_argument("--batch-size", type=int, default=64, help="images per step (default: 64)")
    demo.add_argument("--lr", type=float, default=0.02, help="learning rate (default: 0.02)")
    demo.add_argument("--momentum", type=float, default=0.9, help="momentum (default: 0.9)")
    demo.add_argument("--seed", type=int, default=0, help="shuffling seed (default: 0)")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ShapeError, ValueError, FileNotFoundError) as error:
        print(f"volnet {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"volnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
