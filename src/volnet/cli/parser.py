"""``build_parser()``: every command's options and help, and the function that runs it (``args.run``)."""

from __future__ import annotations

import argparse

from .. import __version__
from .args import (ARCHITECTURE_NAMES, OPTIMIZER_NAMES, REPORT_MAX_SAMPLES, SCHEDULES, Formatter, Parser, count,
                   decay_factor, fraction, non_negative_float, number, positive_float, positive_int, report_samples,
                   scale, size)
from .check import cmd_check
from .evaluate import cmd_eval
from .export import cmd_export
from .fetch import cmd_fetch
from .predict import cmd_predict
from .report import cmd_report
from .summary import cmd_summary
from .train import cmd_train


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="volnet", allow_abbrev=False, description="ConvNets on 3-D activation volumes, in NumPy.",
        epilog="Start with: volnet train --arch lenet --data mnist5k --epochs 8  (bundled digits, no download)")
    parser.add_argument("--version", action="version", version=f"volnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = Formatter

    train = sub.add_parser("train", help="train a network and save checkpoints", formatter_class=formatter,
                           allow_abbrev=False, record_given=True,
                           description="Train a network on a data set. A checkpoint is written to OUT after every "
                                       "epoch and on Ctrl-C; --resume continues exactly where a run stopped.")
    train.add_argument("--arch", default="lenet", metavar="NAME|NOTATION",
                       help=f"a zoo name ({', '.join(ARCHITECTURE_NAMES)}) or the notes' notation, e.g. "
                            "'INPUT -> [CONV -> RELU -> POOL]*2 -> FC' (input size and classes come from the data)")
    train.add_argument("--data", choices=["mnist5k", "mnist", "cifar10", "folder"], default="mnist5k",
                       help="data set (mnist5k is bundled and needs no download)")
    train.add_argument("--root", help="folder holding the data set's files (default: the cache folder)")
    train.add_argument("--size", type=size(2, "28x28"), help="resize folder images to HxW")
    train.add_argument("--grayscale", action="store_true", help="read folder images as one channel")
    train.add_argument("--stream", action="store_true",
                       help="--data folder: read images from disk as batches need them instead of loading them whole "
                            "(worker processes read ahead with --engine torch; see docs/engines.md)")
    train.add_argument("--epochs", type=positive_int, help="passes over the training set (default: 8; with --resume: "
                                                  "the saved run's, or more to extend it)")
    train.add_argument("--batch-size", type=positive_int, default=64, help="images per step")
    train.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="adam", help="update rule")
    train.add_argument("--lr", type=positive_float, default=0.002, help="learning rate")
    train.add_argument("--momentum", type=fraction, default=0.9, help="momentum (momentum, nesterov)")
    train.add_argument("--weight-decay", type=non_negative_float, default=0.0, help="L2 weight decay")
    train.add_argument("--schedule", choices=SCHEDULES, default="none", help="learning-rate schedule")
    train.add_argument("--step-every", type=positive_int, default=10, help="epochs between step decays")
    train.add_argument("--gamma", type=decay_factor, default=0.1, help="step decay factor")
    train.add_argument("--warmup", type=count, default=0, help="epochs of linear warm-up")
    train.add_argument("--augment",
                       help="comma-separated, applied in this order: crop (random crop after zero padding), flip, "
                            "rotate, shift (translate), jitter (brightness, contrast, saturation), cutout; "
                            "see docs/training.md")
    train.add_argument("--crop-pad", type=count, default=4, help="zero padding before a random crop")
    train.add_argument("--rotate-degrees", type=number(float, "a number in [0, 180]", lambda v: 0 <= v <= 180),
                       default=10.0, help="largest rotation either way for --augment rotate")
    train.add_argument("--shift-pixels", type=non_negative_float, default=2.0,
                       help="largest move along each axis for --augment shift")
    train.add_argument("--jitter-strength", type=fraction, default=0.2,
                       help="factors in [1 - s, 1 + s] for --augment jitter")
    train.add_argument("--cutout-size", type=count, default=8, help="side of the zeroed square for --augment cutout")
    train.add_argument("--no-normalize", action="store_true", help="skip per-channel normalisation")
    train.add_argument("--val-split", type=fraction, default=0.1, help="fraction of training images held out")
    train.add_argument("--loss", choices=["softmax", "svm"], default="softmax", help="classifier loss")
    train.add_argument("--seed", type=count, default=0, help="seeds initialisation, shuffling, augmentation")
    train.add_argument("--out", help="output folder (default: runs/ARCH-DATA; runs/net-HASH-DATA for a notation)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run that --out already holds (otherwise training refuses to start)")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue a saved run with its saved settings; --epochs beyond the saved total extends "
                            "it (a cosine schedule is stretched to the new end), --root finds its data elsewhere")
    train.add_argument("--report", action="store_true",
                       help="rewrite OUT/report.html after every epoch (volnet report's page; it reloads itself)")
    train.add_argument("--class-weight", metavar="balanced|FILE",
                       help="weigh each class in the loss: balanced (n / (classes x images of the class), for "
                            "unbalanced folders) or a JSON file, a list or an object of class name -> weight")
    train.add_argument("--init-from", metavar="CHECKPOINT",
                       help="start from another run's weights: the layers that match (same place, kind and shapes) "
                            "are copied, the others (a new classifier head...) initialised fresh and listed")
    train.add_argument("--freeze", metavar="LAYERS",
                       help="layers whose weights do not train: numbers and ranges as the summary numbers them "
                            "(1-6, 1,3) or notation kinds (CONV, BN), comma-separated")
    train.add_argument("--keep-best", nargs="?", const="val_accuracy", choices=["val_accuracy", "val_loss"],
                       help="after every epoch that improves this validation figure (default: val_accuracy), write "
                            "OUT/best.safetensors, which eval, predict, report, export and --resume read")
    train.add_argument("--early-stop", type=positive_int, metavar="N",
                       help="stop after N epochs without improvement of the --keep-best figure (val_loss without "
                            "--keep-best) and say which epoch was best")
    train.add_argument("--engine", choices=["numpy", "torch"], default="numpy",
                       help="what computes each step: volnet's NumPy layers, or PyTorch (same options, same "
                            "checkpoints; see docs/engines.md)")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="--engine torch: where to train (auto: CUDA when PyTorch sees a GPU)")
    train.add_argument("--nproc", type=positive_int, default=1,
                       help="--engine torch: data-parallel worker processes (DistributedDataParallel); "
                            "--batch-size stays the images of one step, split across them")
    train.add_argument("--sync-bn", action="store_true",
                       help="--engine torch with --nproc: BatchNorm statistics over the whole batch (SyncBatchNorm, "
                            "CUDA only); without it each worker normalises with its own share's statistics")
    train.set_defaults(run=cmd_train)

    fetch = sub.add_parser("fetch", help="download MNIST or CIFAR-10 and verify its checksums",
                           formatter_class=formatter,
                           description="Download a data set into the cache folder ($VOLNET_DATA or ~/.cache/volnet) "
                                       "or --root, checking every file against its published checksum. Offline, "
                                       "place the files there by hand: the error names the paths.")
    fetch.add_argument("name", choices=["mnist", "cifar10"], help="data set")
    fetch.add_argument("--root", help="folder to download into (default: the cache folder)")
    fetch.set_defaults(run=cmd_fetch)

    evaluate = sub.add_parser("eval", help="accuracy, confusion matrix, per-class precision/recall/F1 and top-k "
                                           "accuracy of a checkpoint on a test set", formatter_class=formatter)
    evaluate.add_argument("checkpoint", help="a checkpoint file written by volnet train (in its --out folder)")
    evaluate.add_argument("--data", choices=["mnist5k", "mnist", "cifar10", "folder"],
                          help="data set (default: the one it was trained on)")
    evaluate.add_argument("--root", help="folder holding the data set's files")
    evaluate.add_argument("--split", choices=["train", "test"], default="test", help="which split")
    evaluate.add_argument("--batch-size", type=positive_int, default=256, help="images per forward pass")
    evaluate.add_argument("--top-k", type=positive_int, nargs="+", default=[1, 3, 5], metavar="K",
                          help="top-k accuracies to report (those above the number of classes are left out)")
    evaluate.add_argument("--json", action="store_true",
                          help="print every figure as JSON for scripts: accuracy, loss, top-k, the confusion "
                               "matrix, per-class precision, recall, F1 and support")
    evaluate.set_defaults(run=cmd_eval)

    predict = sub.add_parser("predict", help="top-k classes for image files", formatter_class=formatter)
    predict.add_argument("checkpoint", help="a checkpoint file written by volnet train (in its --out folder)")
    predict.add_argument("images", nargs="+", metavar="IMAGE",
                         help="PNG/JPEG files, or folders of them (converted to the net's input size and colours)")
    predict.add_argument("--top-k", type=positive_int, default=3, help="how many classes to show")
    predict.add_argument("--json", action="store_true",
                         help="one JSON record per line and image: path, note, top classes with probabilities")
    predict.add_argument("--csv", action="store_true",
                         help="CSV with a header: path, class_1, probability_1, ..., note; one row per image")
    predict.add_argument("--slide", action="store_true",
                         help="enlarge the image, slide the net over it in one pass (FC layers converted to CONV) "
                              "and average the class scores of every position")
    predict.add_argument("--scale", type=scale, default=1.5, help="enlargement for --slide")
    predict.add_argument("--heatmap", metavar="PNG", help="with --slide: draw one class's score map over the image")
    predict.add_argument("--heat-class", type=count, help="class index for --heatmap (default: the top class)")
    predict.set_defaults(run=cmd_predict)

    report = sub.add_parser(
        "report", help="one self-contained HTML page about a checkpoint", formatter_class=formatter,
        description="Write one HTML file (scripts, styles and images inline: it opens offline and can be mailed) "
                    "showing the architecture, the training curves, test results, every layer's activations for "
                    "the IMAGEs (or test images), the filters, saliency/occlusion/Grad-CAM/sliding-window maps and "
                    "the notes' CONV demo with the network's own numbers.")
    report.add_argument("checkpoint", help="a checkpoint file written by volnet train")
    report.add_argument("images", nargs="*", metavar="IMAGE", help="PNG/JPEG files to show (default: test images)")
    report.add_argument("-o", "--output", default="report.html",
                        help="the HTML file to write (never one of the inputs)")
    report.add_argument("--overwrite", action="store_true", help="replace OUTPUT when it already exists")
    report.add_argument("--samples", type=report_samples, default=4,
                        help=f"test images to show without IMAGEs (at most {REPORT_MAX_SAMPLES} and the test split's)")
    report.add_argument("--test-limit", type=positive_int, default=1000,
                        help="test images evaluated for the results section")
    report.set_defaults(run=cmd_report)

    summary = sub.add_parser(
        "summary", help="volumes, parameters, FLOPs, receptive fields and memory of an architecture",
        formatter_class=formatter,
        description="Describe an architecture without allocating it: every layer's output volume, parameters, "
                    "multiply-adds, receptive field and the memory it keeps for backprop; memory totals for "
                    "training and inference; the notes' sizing lints; and the largest batch within a budget.")
    summary.add_argument("arch", metavar="NAME|NOTATION",
                         help=f"a zoo name ({', '.join(ARCHITECTURE_NAMES)}), a checkpoint file, or notation such as "
                              "'INPUT[32x32x3] -> [CONV3-32 -> RELU]*2 -> POOL2 -> FC10'")
    summary.add_argument("--input", type=size(3, "28x28x1"), help="input volume HxWxD (default: the net's own)")
    summary.add_argument("--classes", type=positive_int, help="number of classes (default: the net's own)")
    summary.add_argument("--batch", type=positive_int, default=1, help="images per batch for the memory figures")
    summary.add_argument("--optimizer", choices=["none", *OPTIMIZER_NAMES],
                         help="optimizer whose step cache counts in training memory (default: a checkpoint's own, "
                              "else momentum)")
    summary.add_argument("--dtype", choices=["float32", "float64", "float16"], default="float32",
                         help="bytes per value: 4, 8 or 2")
    summary.add_argument("--budget", help="memory budget such as 12GB, 8GiB or 512MB: print the largest batch "
                                          "that fits, for training and inference")
    summary.add_argument("--json", action="store_true", help="print the report as JSON for scripts")
    summary.set_defaults(run=cmd_summary)

    export = sub.add_parser(
        "export", help="write a checkpoint as an ONNX model", formatter_class=formatter,
        description="Write a checkpoint's network as an ONNX model (opset 17, IR version 8, any batch size) "
                    "for onnxruntime and other runtimes; see docs/export.md. Needs the onnx package "
                    "(pip install onnx onnxruntime, or pip install '.[export]' from the repository folder).")
    export.add_argument("checkpoint", help="a checkpoint file written by volnet train (in its --out folder)")
    export.add_argument("output", metavar="MODEL.onnx", help="the ONNX file to write")
    export.add_argument("--layout", choices=["nhwc", "nchw"], default="nhwc",
                        help="input layout: nhwc (N x H x W x D, as volnet) or nchw (N x D x H x W)")
    export.add_argument("--raw-pixels", action="store_true",
                        help="put the checkpoint's normalisation in the graph, so it takes raw pixels in [0, 1]")
    export.add_argument("--probabilities", action="store_true",
                        help="end the graph with a Softmax, so it gives the class probabilities volnet predict "
                             "prints instead of the class scores")
    export.set_defaults(run=cmd_export)

    check = sub.add_parser(
        "check", help="check your own layer functions (the assignment's API) against volnet's",
        formatter_class=formatter,
        description="Run FILE (your own code: it is imported, as python FILE would) in a child process and check every "
                    "function it defines among the assignment's (affine_forward, conv_forward_naive, "
                    "max_pool_backward_naive, softmax_loss, ...) on random configurations against volnet's kernels; "
                    "a failure shows the smallest configuration found, the notes' formula, a hint for known mistakes "
                    "and volnet's own gradient held to float64 centred differences there. See docs/check.md. "
                    "Exit 0: all pass, 1: one fails.")
    check.add_argument("file", metavar="FILE.py", help="your Python file")
    check.add_argument("--json", action="store_true", help="print the report as JSON for scripts")
    check.add_argument("--api", choices=["auto", "assignment", "volnet"], default="auto",
                       help="whose signatures: the assignment's (NCHW), volnet.ops's own (NHWC), or auto: volnet's "
                            "when the file defines a name only volnet has (fc_forward, pool_forward, ...)")
    check.add_argument("--cases", type=positive_int, default=100, help="random configurations per function")
    check.add_argument("--time-limit", type=positive_float, default=20.0,
                       help="seconds per function: the search stops after half, a call still running is stopped")
    check.set_defaults(run=cmd_check)
    return parser
