"""The ``volnet`` command. Argument parsing and printing only; the work is in the library.

Exit codes: 0 success, 1 failure (bad data, diverged training, unreadable
checkpoint...), 2 usage error (one line naming the flag), 130 interrupted by
Ctrl-C and 143 by SIGTERM (128 + the signal; the message says what was saved).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
from pathlib import Path

from . import __version__, runtime

SCHEDULES = ("none", "step", "cosine")
# The names the parser offers, written out so that `volnet --help` starts without importing NumPy;
# tests/test_cli_usage.py holds them equal to volnet.optim.OPTIMIZERS and volnet.zoo.ARCHITECTURES.
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
ARCHITECTURE_NAMES = ("notes", "lenet", "cifar-ref", "allconv", "lenet5", "lenet5-cifar", "alexnet", "alexnet-cifar",
                      "zfnet", "zfnet-cifar", "vgg16", "vgg16-cifar", "vgg19", "vgg19-cifar", "googlenet",
                      "googlenet-cifar", "resnet18", "resnet18-cifar", "resnet34", "resnet34-cifar", "resnet50",
                      "resnet50-cifar")
DEFAULT_EPOCHS = 8


class _Formatter(argparse.HelpFormatter):
    """Shows "(default: X)" for options that have a meaningful default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


class UsageError(Exception):
    """A bad combination of arguments: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line naming the flag (argparse's own prints the whole usage block first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _size(dims: int, example: str):
    """An argument type for ``HxW`` (dims=2) or ``HxWxD`` (dims=3) with positive sizes."""
    def parse(text: str) -> tuple[int, ...]:
        try:
            sizes = tuple(int(part) for part in text.lower().split("x"))
        except ValueError:
            sizes = ()
        if len(sizes) != dims:
            raise argparse.ArgumentTypeError(f"expected {dims} sizes like {example}, got {text!r}")
        if min(sizes) < 1:
            raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
        return sizes
    parse.__name__ = "HxW" if dims == 2 else "HxWxD"
    return parse


def _number(kind, requirement: str, ok):
    """An argument type: ``kind(text)`` that must satisfy ``ok`` (finite, for floats)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {requirement}, got {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


_positive_int = _number(int, "an integer >= 1", lambda v: v >= 1)
_count = _number(int, "an integer >= 0", lambda v: v >= 0)
_positive_float = _number(float, "a finite number > 0", lambda v: v > 0)
_non_negative_float = _number(float, "a finite number >= 0", lambda v: v >= 0)
_fraction = _number(float, "a number in [0, 1)", lambda v: 0 <= v < 1)
_decay_factor = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
_scale = _number(float, "a finite number >= 1", lambda v: v >= 1)
REPORT_MAX_SAMPLES = 32  # volnet.viz.report.MAX_SAMPLES, written out so that --help does not import NumPy
_report_samples = _number(int, f"an integer in 1..{REPORT_MAX_SAMPLES}", lambda v: 1 <= v <= REPORT_MAX_SAMPLES)


# -- progress ------------------------------------------------------------------

def _progress_callback(stream):
    """A tqdm bar with images/s and ETA on a terminal; one plain line per epoch otherwise."""
    from .train import Callback

    try:
        from tqdm import tqdm
    except ImportError:  # no bar without tqdm: the per-epoch lines still print
        tqdm = None

    class Progress(Callback):
        def __init__(self):
            self.bar = None

        def on_epoch_start(self, epoch, epochs, batches):
            if tqdm is not None and stream.isatty():
                self.bar = tqdm(total=batches, desc=f"epoch {epoch}/{epochs}", unit="batch", file=stream,
                                leave=False, dynamic_ncols=True)

        def on_batch(self, progress):
            if self.bar is not None:
                self.bar.set_postfix_str(f"loss {progress.loss:.4f} acc {progress.accuracy:.3f} "
                                         f"{progress.images_per_second:,.0f} img/s", refresh=False)
                self.bar.update(1)

        def on_epoch(self, record):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            val = (f"  val loss {record.val_loss:.4f}  val acc {record.val_accuracy:.3f}"
                   if record.val_loss is not None else "")
            print(f"epoch {record.epoch}  lr {record.lr:.3g}  loss {record.train_loss:.4f}  "
                  f"acc {record.train_accuracy:.3f}{val}  {record.images_per_second:,.0f} img/s  "
                  f"{record.seconds:.1f}s", file=stream, flush=True)

    return Progress()


def _report_callbacks(args, out_dir) -> list:
    """With --report: a callback that rewrites OUT/report.html after every epoch (atomically; the page reloads)."""
    if not getattr(args, "report", False):
        return []
    from .train import Callback
    from .train.run_folder import RunFolder
    from .viz.report import write_report

    folder = RunFolder(out_dir)

    class Report(Callback):
        epochs = None

        def on_epoch_start(self, epoch, epochs, batches):
            self.epochs = epochs

        def on_epoch(self, record):
            reload = 15 if record.epoch != self.epochs else None  # the last epoch's page is final: it stays still
            try:
                path = write_report(folder.checkpoint, folder.path / "report.html", reload_seconds=reload)
            except (ValueError, OSError) as error:  # a report that fails never stops the training
                print(f"report not written: {error}", file=sys.stderr)
            else:
                print(f"wrote {path}", flush=True)

    return [Report()]


# -- commands ------------------------------------------------------------------

def _load_data(name, root, split, size=None, grayscale=False, stream=False, workers=0):
    from .data import load

    options = {}
    if name == "folder":
        options = {"size": size, "grayscale": grayscale}
        if stream:
            options.update(stream=True, workers=workers)
    elif size is not None or grayscale or stream:
        raise UsageError("--size, --grayscale and --stream apply to --data folder only")
    return load(name, root=root, split=split, **options)


def _stream_workers(args) -> int:
    """Processes reading streamed batches ahead: on the PyTorch engine half the cores, at most 4; the NumPy
    engine reads in its own process (PyTorch's DataLoader is what starts the readers)."""
    return 0 if args.engine_object is None else max(1, min(4, (os.cpu_count() or 2) // 2))


# Options a resumed run may change; every other one is the saved run's.
RESUME_OVERRIDES = ("--epochs", "--root", "--resume", "--report", "--engine", "--device", "--nproc", "--sync-bn",
                    "--stream")


def _given_options(parser, argv) -> list[str]:
    """The options written on the command line (abbreviations are off, so each appears as itself)."""
    flags = {flag for action in parser._actions for flag in action.option_strings}
    return [flag for flag in flags if any(arg == flag or arg.startswith(flag + "=") for arg in argv)]


def _default_out(arch: str, data: str) -> Path:
    """``runs/ARCH-DATA`` for a zoo name; a notation gets a short stable name instead of nested folders."""
    from .zoo import ARCHITECTURES

    if arch in ARCHITECTURES:
        return Path("runs") / f"{arch}-{data}"
    return Path("runs") / f"net-{hashlib.sha1(arch.encode()).hexdigest()[:8]}-{data}"


def _build_for_data(arch: str, image_shape, classes: int, data: str, seed: int):
    """The net for the data's images; a zoo net made for another image size says so, not a stride error."""
    from .shapes import ShapeError
    from .spec import SpecError
    from .zoo import ARCHITECTURES, UnknownArchitecture, build_any, build_named

    try:
        return build_any(arch, image_shape, classes, seed=seed)
    except (UnknownArchitecture, SpecError) as error:
        raise UsageError(f"argument --arch: {error}") from None
    except ShapeError as error:
        if arch not in ARCHITECTURES:
            raise UsageError(f"argument --arch: {error}") from None
        native = build_named(arch, allocate=False).input_shape
        if tuple(native) == tuple(image_shape):
            raise
        fitting = [name for name in ARCHITECTURES
                   if build_named(name, allocate=False).input_shape == tuple(image_shape)]
        hint = f"; architectures made for {_shape(image_shape)}: {', '.join(fitting)}" if fitting else ""
        raise UsageError(f"argument --arch: {arch} expects {_shape(native)} images, {data} images are "
                         f"{_shape(image_shape)}{hint}") from None


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def _counted(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"8 epochs"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _schedule(args):
    from .optim import CosineAnnealing, LinearWarmup, StepDecay

    schedule = None
    if args.schedule == "step":
        schedule = StepDecay(args.lr, every=args.step_every, gamma=args.gamma)
    elif args.schedule == "cosine":
        schedule = CosineAnnealing(args.lr, T=args.epochs - args.warmup)
    if args.warmup:
        from .optim import Constant

        schedule = LinearWarmup(schedule or Constant(args.lr), warmup=args.warmup)
    return schedule


def _augment(args):
    from .data import Augment, HorizontalFlip, RandomCrop

    names = [n for n in (args.augment or "").split(",") if n]
    unknown = set(names) - {"crop", "flip"}
    if unknown:
        raise UsageError(f"unknown augmentation {', '.join(sorted(unknown))}; choose from crop, flip")
    transforms = [RandomCrop(pad=args.crop_pad) if n == "crop" else HorizontalFlip() for n in names]
    return Augment(transforms) if transforms else None


def cmd_train(args) -> int:
    from .train import RunFolder, TrainingInterrupted

    launched = _choose_engine(args)
    if launched is not None:  # --nproc N: the workers ran the training; this is their exit code
        return launched
    try:
        trainer = _resumed_trainer(args) if args.resume else _new_trainer(args)
        if trainer is None:
            return 0
        if args.engine_object is not None and args.engine_object.rank != 0:
            trainer.callbacks = []  # progress and reports come from rank 0 alone
        trainer.run()
    except TrainingInterrupted as stop:
        if args.engine_object is not None and args.engine_object.rank != 0:  # rank 0 says it for all workers
            return 128 + stop.signal
        print(f"\ninterrupted by {stop}", file=sys.stderr)
        if stop.checkpoint is not None:
            print(f"resume with: volnet train --resume {stop.checkpoint}", file=sys.stderr)
        return 128 + stop.signal
    finally:
        if args.engine_object is not None:
            args.engine_object.close()
    last = trainer.history[-1]
    history = " and ".join(path.name for path in RunFolder(trainer.out_dir).history_files)
    print(f"saved {trainer.checkpoint_path} (history: {history} beside it)")
    if last.val_accuracy is not None:
        print(f"validation accuracy: {last.val_accuracy:.2%}")
    return 0


def _choose_engine(args):
    """Set ``args.engine_object`` (None: the NumPy engine); with ``--nproc N`` launch N workers instead and
    return their exit code (None otherwise). A worker started by torchrun or volnet joins its group here."""
    args.engine_object = None
    if args.engine == "numpy":
        torch_only = sorted({"--device", "--nproc", "--sync-bn"} & set(_given_options(args.train_parser, args.argv)))
        if torch_only:
            raise UsageError(f"{', '.join(torch_only)} apply to --engine torch only")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError("argument --engine: this process is one of several workers (torchrun); the NumPy "
                             "engine trains in one process, so pass --engine torch")
        return None
    from .interop import torch_engine

    worker = torch_engine.is_worker()
    try:
        device = torch_engine.resolve_device(args.device)
        notes = [] if worker else torch_engine.check_workers(args.nproc, device)
        torch_engine.check_sync_bn(args.sync_bn, device)
    except torch_engine.EngineError as error:
        raise UsageError(str(error)) from None
    for note in notes:
        print(f"volnet train: warning: {note}", file=sys.stderr)
    if not worker and args.nproc > 1:
        if not args.resume:  # refused here once, not by every worker
            from .train.run_folder import RunFolder

            out = RunFolder(args.out or _default_out(args.arch, args.data))
            if out.holds_run() and not args.overwrite:
                raise UsageError(f"{out.path} already holds a run; continue it with --resume {out.checkpoint}, "
                                 "replace it with --overwrite, or choose another --out")
        backend = "nccl" if device == "cuda" else "gloo"
        print(f"engine: torch on {device}, {args.nproc} DistributedDataParallel workers ({backend})", flush=True)
        return torch_engine.launch(args.argv, args.nproc)
    engine = torch_engine.TorchEngine(device, distributed=worker, sync_bn=args.sync_bn)
    if engine.rank != 0:  # one worker speaks for all; errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    elif not worker:
        print(f"engine: torch on {device}")
    args.engine_object = engine
    return None


def _new_trainer(args):
    from .train.run_folder import RunFolder

    args.epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    if args.warmup >= args.epochs:
        raise UsageError(f"argument --warmup: {_counted(args.warmup, 'epoch')} of warm-up leave none of the "
                         f"{args.epochs} "
                         "--epochs; use a smaller --warmup")
    out = RunFolder(args.out or _default_out(args.arch, args.data))
    if out.holds_run() and not args.overwrite:
        raise UsageError(f"{out.path} already holds a run; continue it with --resume {out.checkpoint}, replace it "
                         "with --overwrite, or choose another --out")
    created = [folder for folder in (out.path, *out.path.parents) if not folder.exists()]  # innermost first
    out.prepare()  # an unwritable --out is found before the data is read and the first epoch trained
    try:
        return _trainer_into(out, args)
    except BaseException:
        for folder in created:  # a run refused before training leaves no empty folders behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _trainer_into(out, args):
    from .analysis import require_fit
    from .data import Normalizer
    from .data.split import split_validation
    from .optim import make_optimizer
    from .train import Trainer

    root = str(Path(args.root).resolve()) if args.root else None
    full = _load_data(args.data, root, "train", args.size and tuple(args.size), args.grayscale, args.stream,
                      _stream_workers(args))
    train, val = split_validation(full, args.val_split, seed=args.seed)
    net = _build_for_data(args.arch, train.images.shape[1:], len(full.classes), args.data, args.seed)
    if args.engine_object is None:  # the NumPy engine's memory; PyTorch manages its own
        require_fit(net, min(args.batch_size, len(train)), "train", args.optimizer, what=f"training {args.arch}",
                    batch_flag="--batch-size")  # validation runs at the same batch, in less memory
    kwargs = {"momentum": args.momentum} if args.optimizer in ("momentum", "nesterov") else {}
    optimizer = make_optimizer(args.optimizer, net.params(), lr=args.lr, weight_decay=args.weight_decay, **kwargs)
    data = {"name": args.data, "root": root, "size": args.size and list(args.size),
            "grayscale": args.grayscale, "val_split": args.val_split, "classes": list(full.classes)}
    trainer = Trainer(net, optimizer, train, val=val, epochs=args.epochs, batch_size=args.batch_size,
                      loss=args.loss, schedule=_schedule(args), augment=_augment(args),
                      normalizer=None if args.no_normalize else Normalizer.fit(train.images), seed=args.seed,
                      out_dir=out.path, overwrite=args.overwrite,
                      callbacks=[_progress_callback(sys.stdout), *_report_callbacks(args, out.path)],
                      extra_metadata={"data": data}, engine=args.engine_object)
    workers = getattr(train.images, "workers", None)
    streamed = "" if workers is None else (f", streamed from disk ({workers} reading processes)" if workers else
                                           ", streamed from disk")
    print(f"data: {args.data}, {len(train)} training / {len(val) if val else 0} validation images of "
          f"{_shape(train.images.shape[1:])}, {len(full.classes)} classes{streamed}")
    print(net.summary())
    print(f"writing to {out.path}")
    return trainer


def _resumed_trainer(args):
    """The saved run, continued or extended; None (after saying so) when it is already complete."""
    from .data.split import split_validation
    from .train import Trainer
    from .train.checkpoint import read, require_training_state, unpack_run

    refused = sorted(set(_given_options(args.train_parser, args.argv)) - set(RESUME_OVERRIDES))
    if refused:
        raise UsageError(f"{', '.join(refused)} cannot change a resumed run: --resume continues with the saved "
                         "run's settings; only --epochs (to extend it), --root (to find its data elsewhere) and "
                         f"{', '.join(f for f in RESUME_OVERRIDES if f not in ('--epochs', '--root', '--resume'))} "
                         "apply")
    tensors, metadata = read(args.resume)
    require_training_state(metadata, args.resume)
    saved_epochs, position = metadata["train"]["epochs"], metadata["position"]
    done, batch = position["epoch"], position["batch"]
    epochs = saved_epochs if args.epochs is None else args.epochs
    if epochs < done or (epochs == done and batch):
        raise UsageError(f"argument --epochs: the run has already trained {_counted(done, 'epoch')}; pass more "
                         f"than {done} "
                         "to extend it, or leave --epochs out to finish it")
    if epochs == done:
        unpack_run(tensors, metadata, args.resume)  # nothing to train, but a damaged file is still said to be one
        extend = f"; pass --epochs N (more than {done}) to extend it" if args.epochs is None else ""
        print(f"{args.resume}: the run is complete ({done} of {_counted(saved_epochs, 'epoch')}), nothing to "
              f"train{extend}")
        return None
    data = metadata["data"]
    root = args.root and str(Path(args.root).resolve())
    full = _load_data(data["name"], root or data["root"], "train", data["size"], data["grayscale"], args.stream,
                      _stream_workers(args))
    train, val = split_validation(full, data["val_split"], seed=metadata["train"]["seed"])
    callbacks = [_progress_callback(sys.stdout), *_report_callbacks(args, Path(args.resume).parent)]
    trainer = Trainer.from_checkpoint(args.resume, train, val=val, callbacks=callbacks,
                                      state=(tensors, metadata), engine=args.engine_object)
    if root:
        trainer.extra_metadata["data"] = {**data, "root": root}
    print(f"resuming {args.resume} at epoch {done + 1}, batch {batch + 1} of a run of "
          f"{_counted(saved_epochs, 'epoch')}")
    if epochs != saved_epochs:
        trainer.extend(epochs)
        schedule = trainer.schedule
        follows = "" if schedule is None else (
            f"; the {schedule.get_config()['name']} schedule is fitted to {_counted(epochs, 'epoch')} "
            f"(learning rate {schedule.lr_at(done):.3g} in epoch {done + 1})")
        print(f"extending the run from {saved_epochs} to {_counted(epochs, 'epoch')}{follows}")
    return trainer


def cmd_fetch(args) -> int:
    from .data import fetch

    folder = fetch(args.name, root=args.root)
    print(f"{args.name}: files verified in {folder}")
    return 0


def cmd_eval(args) -> int:
    from .train import evaluate
    from .train.checkpoint import load_model

    net, normalizer, _, metadata = load_model(args.checkpoint)
    data = metadata.get("data", {})
    name = args.data or data.get("name")
    if name is None:
        raise UsageError("this checkpoint does not record its data set; pass --data")
    root = args.root or data.get("root")
    test = _load_data(name, root, args.split, data.get("size") and tuple(data["size"]), data.get("grayscale", False))
    from .analysis import require_fit

    batch = min(args.batch_size, len(test))
    require_fit(net, batch, "inference", what=f"evaluating {args.checkpoint}", batch_flag="--batch-size")
    loss, accuracy = evaluate(net, test.images, test.labels, batch_size=batch,
                              loss=metadata.get("train", {}).get("loss", "softmax"), transform=normalizer)
    epoch = f" (epoch {metadata['position']['epoch']})" if "position" in metadata else ""
    print(f"{args.checkpoint}{epoch} on {name} {args.split}: accuracy {accuracy:.2%}, "
          f"loss {loss:.4f}, {len(test)} images")
    return 0


def _refuse_writing_over_inputs(output, inputs, flag: str) -> None:
    """Refuse an ``output`` that is one of the ``inputs``: the same file by inode, through hard or symbolic links."""
    for given in inputs:
        try:
            same = os.path.samefile(output, given)
        except OSError:  # either does not exist (yet): not the same file
            continue
        if same:
            raise UsageError(f"argument {flag}: {output} is the input {given} (the same file); writing it would "
                             f"destroy the input, so choose another {flag}")


def cmd_predict(args) -> int:
    import numpy as np

    from .convert import slide, sliding_size, softmax
    from .data.folder import read_image_with_note
    from .train.checkpoint import load_model

    net, normalizer, _, metadata = load_model(args.checkpoint)
    classes = metadata.get("data", {}).get("classes") or [str(i) for i in range(net.output_shape[-1])]
    H, W, D = net.input_shape
    if args.heatmap and not args.slide:
        raise UsageError("--heatmap needs --slide (the score map comes from sliding the net over the image)")
    if args.heatmap and len(args.images) != 1:
        raise UsageError("--heatmap draws one image; pass a single IMAGE")
    if args.heatmap:
        _refuse_writing_over_inputs(args.heatmap, [args.checkpoint, *args.images], "--heatmap")
    size = sliding_size(net, args.scale) if args.slide else (H, W)
    if args.slide:  # before any image is read: refuse a scale the machine cannot hold
        from .convert.sliding import require_sliding_memory

        require_sliding_memory(net, args.scale, len(args.images), heatmap=bool(args.heatmap))
    read = [read_image_with_note(path, size=size, grayscale=D == 1) for path in args.images]
    for path, (_, note) in zip(args.images, read):
        if note:  # say how an image was changed to fit the net: RGBA to grayscale, 640x480 to 28x28...
            print(f"{path}: {note}")
    raw = np.stack([volume for volume, _ in read])
    images = normalizer(raw) if normalizer is not None else raw
    if args.slide:
        score_map, scores = slide(net, images)
        print(f"sliding the {H}x{W} net over {size[0]}x{size[1]} images: "
              f"{score_map.shape[1]}x{score_map.shape[2]} positions averaged")
    else:
        scores = net.forward(images, train=False)
    probabilities = softmax(scores.reshape(len(images), -1))  # a net ending in GAP gives N x 1 x 1 x classes
    k = min(args.top_k, probabilities.shape[1])
    for path, p in zip(args.images, probabilities):
        best = np.argsort(p)[::-1][:k]
        print(f"{path}: " + ", ".join(f"{classes[c]} {p[c]:.1%}" for c in best))
    if args.heatmap:
        from .viz.heatmap import heatmap_with_legend

        target = args.heat_class if args.heat_class is not None else int(probabilities[0].argmax())
        if not 0 <= target < len(classes):
            raise UsageError(f"--heat-class must be in 0..{len(classes) - 1}")
        picture = heatmap_with_legend(raw[0], softmax(score_map[0])[..., target], label=f"P({classes[target]})")
        _save_png(picture, args.heatmap)
        print(f"wrote {args.heatmap}: where the net sees class {classes[target]}")
    return 0


def _save_png(picture, path) -> None:
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)


def cmd_report(args) -> int:
    import time

    from .viz.report import write_report

    _refuse_writing_over_inputs(args.output, [args.checkpoint, *args.images], "-o/--output")
    if os.path.lexists(args.output) and not args.overwrite:
        raise UsageError(f"argument -o/--output: {args.output} already exists; replace it with --overwrite, or "
                         "choose another -o")
    started = time.perf_counter()
    path = write_report(args.checkpoint, args.output, args.images, samples=args.samples, test_limit=args.test_limit)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB in {time.perf_counter() - started:.1f}s)")
    return 0


def cmd_summary(args) -> int:
    import json
    from dataclasses import asdict

    from .analysis import analyze, batch_fit
    from .shapes import ShapeError
    from .spec import SpecError
    from .zoo import UnknownArchitecture, build_any

    try:
        is_file = Path(args.arch).is_file()
    except OSError:  # a notation longer than a file name may be ("File name too long")
        is_file = False
    if is_file:  # a checkpoint: the architecture its metadata records, built without weights
        from .net import Sequential
        from .train.checkpoint import read

        if args.input or args.classes:
            raise UsageError("--input and --classes do not apply to a checkpoint, whose architecture is fixed")
        metadata = read(args.arch)[1]
        net = Sequential.from_config(metadata["architecture"], allocate=False)
        if args.optimizer is None and "optimizer" in metadata:
            args.optimizer = metadata["optimizer"]["config"]["name"]
    else:
        try:
            net = build_any(args.arch, args.input and tuple(args.input), args.classes, allocate=False)
        except (UnknownArchitecture, SpecError) as error:
            raise UsageError(f"argument NAME|NOTATION: {error}") from None
        except ShapeError as error:
            H, W, D = args.input or (0, 0, 0)
            if H <= 4 < D:  # 1x28x28 or 3x32x32: written channels first
                raise ShapeError(f"{error}; volnet volumes are H x W x D (depth last): for {H} channels of {W}x{D} "
                                 f"pass --input {W}x{D}x{H}") from None
            raise
    optimizer = {"none": None, None: "momentum"}.get(args.optimizer, args.optimizer)
    report = analyze(net, batch=args.batch, dtype=args.dtype, optimizer=optimizer)
    fits = {mode: batch_fit(net, args.budget, optimizer=optimizer, dtype=args.dtype, mode=mode)
            for mode in ("train", "inference")} if args.budget else {}
    if args.json:
        document = report.to_dict()
        if fits:
            document["budget"] = {mode: asdict(fit) for mode, fit in fits.items()}
        print(json.dumps(document, indent=2))
        return 0
    print(report.table())
    for mode, fit in fits.items():
        print(f"\nlargest {mode} batch within {args.budget}: {fit.batch} ({fit.explanation})")
    return 0


def cmd_export(args) -> int:
    from .export import input_description, to_onnx
    from .train.checkpoint import load_model

    _refuse_writing_over_inputs(args.output, [args.checkpoint], "MODEL.onnx")
    net, normalizer, _, metadata = load_model(args.checkpoint)
    included = normalizer if args.raw_pixels else None
    to_onnx(net, args.output, normalizer=included, layout=args.layout,
            classes=metadata.get("data", {}).get("classes"))
    print(f"wrote {args.output} (ONNX opset 17, IR version 8)")
    print(f"  {input_description(net, included, args.layout)}")
    if normalizer is not None and not args.raw_pixels:
        print(f"  normalise first: (pixels - {_numbers(normalizer.mean)}) / {_numbers(normalizer.std)} per channel, "
              "or export with --raw-pixels to put that in the graph")
    elif normalizer is None and args.raw_pixels:
        print("  (this checkpoint was trained without normalisation: the graph takes the pixels as they are)")
    shape = net.output_shape
    if len(shape) == 3 and args.layout == "nchw":
        shape = (shape[2], shape[0], shape[1])
    print(f"  output: float32 N x {' x '.join(map(str, shape))}"
          f"{' class scores (before softmax)' if len(shape) == 1 else f' ({args.layout.upper()})'}")
    return 0


def _numbers(values) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


# -- parser --------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="volnet", allow_abbrev=False, description="ConvNets on 3-D activation volumes, in NumPy.",
        epilog="Start with: volnet train --arch lenet --data mnist5k --epochs 8  (bundled digits, no download)")
    parser.add_argument("--version", action="version", version=f"volnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = _Formatter

    train = sub.add_parser("train", help="train a network and save checkpoints", formatter_class=formatter,
                           allow_abbrev=False,
                           description="Train a network on a data set. A checkpoint is written to OUT after every "
                                       "epoch and on Ctrl-C; --resume continues exactly where a run stopped.")
    train.add_argument("--arch", default="lenet", metavar="NAME|NOTATION",
                       help=f"a zoo name ({', '.join(ARCHITECTURE_NAMES)}) or the notes' notation, e.g. "
                            "'INPUT -> [CONV -> RELU -> POOL]*2 -> FC' (input size and classes come from the data)")
    train.add_argument("--data", choices=["mnist5k", "mnist", "cifar10", "folder"], default="mnist5k",
                       help="data set (mnist5k is bundled and needs no download)")
    train.add_argument("--root", help="folder holding the data set's files (default: the cache folder)")
    train.add_argument("--size", type=_size(2, "28x28"), help="resize folder images to HxW")
    train.add_argument("--grayscale", action="store_true", help="read folder images as one channel")
    train.add_argument("--stream", action="store_true",
                       help="--data folder: read images from disk as batches need them instead of loading them whole "
                            "(worker processes read ahead with --engine torch; see docs/engines.md)")
    train.add_argument("--epochs", type=_positive_int, help="passes over the training set (default: 8; with --resume: "
                                                  "the saved run's, or more to extend it)")
    train.add_argument("--batch-size", type=_positive_int, default=64, help="images per step")
    train.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="adam", help="update rule")
    train.add_argument("--lr", type=_positive_float, default=0.002, help="learning rate")
    train.add_argument("--momentum", type=_fraction, default=0.9, help="momentum (momentum, nesterov)")
    train.add_argument("--weight-decay", type=_non_negative_float, default=0.0, help="L2 weight decay")
    train.add_argument("--schedule", choices=SCHEDULES, default="none", help="learning-rate schedule")
    train.add_argument("--step-every", type=_positive_int, default=10, help="epochs between step decays")
    train.add_argument("--gamma", type=_decay_factor, default=0.1, help="step decay factor")
    train.add_argument("--warmup", type=_count, default=0, help="epochs of linear warm-up")
    train.add_argument("--augment", help="comma-separated: crop (random crop after zero padding), flip")
    train.add_argument("--crop-pad", type=_count, default=4, help="zero padding before a random crop")
    train.add_argument("--no-normalize", action="store_true", help="skip per-channel normalisation")
    train.add_argument("--val-split", type=_fraction, default=0.1, help="fraction of training images held out")
    train.add_argument("--loss", choices=["softmax", "svm"], default="softmax", help="classifier loss")
    train.add_argument("--seed", type=_count, default=0, help="seeds initialisation, shuffling, augmentation")
    train.add_argument("--out", help="output folder (default: runs/ARCH-DATA; runs/net-HASH-DATA for a notation)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run that --out already holds (otherwise training refuses to start)")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue a saved run with its saved settings; --epochs beyond the saved total extends "
                            "it (a cosine schedule is stretched to the new end), --root finds its data elsewhere")
    train.add_argument("--report", action="store_true",
                       help="rewrite OUT/report.html after every epoch (volnet report's page; it reloads itself)")
    train.add_argument("--engine", choices=["numpy", "torch"], default="numpy",
                       help="what computes each step: volnet's NumPy layers, or PyTorch (same options, same "
                            "checkpoints; see docs/engines.md)")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="--engine torch: where to train (auto: CUDA when PyTorch sees a GPU)")
    train.add_argument("--nproc", type=_positive_int, default=1,
                       help="--engine torch: data-parallel worker processes (DistributedDataParallel); "
                            "--batch-size stays the images of one step, split across them")
    train.add_argument("--sync-bn", action="store_true",
                       help="--engine torch with --nproc: BatchNorm statistics over the whole batch (SyncBatchNorm, "
                            "CUDA only); without it each worker normalises with its own share's statistics")
    train.set_defaults(run=cmd_train, train_parser=train)

    fetch = sub.add_parser("fetch", help="download MNIST or CIFAR-10 and verify its checksums",
                           formatter_class=formatter,
                           description="Download a data set into the cache folder ($VOLNET_DATA or ~/.cache/volnet) "
                                       "or --root, checking every file against its published checksum. Offline, "
                                       "place the files there by hand: the error names the paths.")
    fetch.add_argument("name", choices=["mnist", "cifar10"], help="data set")
    fetch.add_argument("--root", help="folder to download into (default: the cache folder)")
    fetch.set_defaults(run=cmd_fetch)

    evaluate = sub.add_parser("eval", help="accuracy of a checkpoint on a test set", formatter_class=formatter)
    evaluate.add_argument("checkpoint", help="a checkpoint file written by volnet train (in its --out folder)")
    evaluate.add_argument("--data", choices=["mnist5k", "mnist", "cifar10", "folder"],
                          help="data set (default: the one it was trained on)")
    evaluate.add_argument("--root", help="folder holding the data set's files")
    evaluate.add_argument("--split", choices=["train", "test"], default="test", help="which split")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256, help="images per forward pass")
    evaluate.set_defaults(run=cmd_eval)

    predict = sub.add_parser("predict", help="top-k classes for image files", formatter_class=formatter)
    predict.add_argument("checkpoint", help="a checkpoint file written by volnet train (in its --out folder)")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files (resized to the net's input)")
    predict.add_argument("--top-k", type=_positive_int, default=3, help="how many classes to show")
    predict.add_argument("--slide", action="store_true",
                         help="enlarge the image, slide the net over it in one pass (FC layers converted to CONV) "
                              "and average the class scores of every position")
    predict.add_argument("--scale", type=_scale, default=1.5, help="enlargement for --slide")
    predict.add_argument("--heatmap", metavar="PNG", help="with --slide: draw one class's score map over the image")
    predict.add_argument("--heat-class", type=_count, help="class index for --heatmap (default: the top class)")
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
    report.add_argument("--samples", type=_report_samples, default=4,
                        help=f"test images to show without IMAGEs (at most {REPORT_MAX_SAMPLES} and the test split's)")
    report.add_argument("--test-limit", type=_positive_int, default=1000,
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
    summary.add_argument("--input", type=_size(3, "28x28x1"), help="input volume HxWxD (default: the net's own)")
    summary.add_argument("--classes", type=_positive_int, help="number of classes (default: the net's own)")
    summary.add_argument("--batch", type=_positive_int, default=1, help="images per batch for the memory figures")
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
    export.set_defaults(run=cmd_export)
    return parser


OUT_OF_MEMORY_HINTS = {
    "train": "lower --batch-size or choose a smaller --arch",
    "predict": "lower --scale or pass fewer images at once",
    "eval": "evaluate on a machine with more memory",
    "summary": "choose a smaller --arch",
}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    runtime.configure_from_environment()  # freed memory kept for reuse, unless VOLNET_KEEP_FREED_MEMORY=0
    try:
        return args.run(args)
    except UsageError as error:
        # one line; a notation error adds the notation with a caret under the column at fault
        first, *pointer = str(error).split("\n")
        print(f"volnet {args.command}: error: {first} (see volnet {args.command} --help)", *pointer, sep="\n",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except (ValueError, OSError, ImportError) as error:  # ShapeError, DataError, CheckpointError... too
        print(f"volnet {args.command}: error: {error}", file=sys.stderr)
        return 1
    except (MemoryError, OverflowError) as error:  # past volnet's own estimates: still one line, no traceback
        what = "out of memory" if isinstance(error, MemoryError) else "a size too large to compute with"
        hint = OUT_OF_MEMORY_HINTS.get(args.command, "ask for less work at once")
        print(f"volnet {args.command}: error: {what} while running {args.command} "
              f"({type(error).__name__}: {error or 'no details'}); {hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"volnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
