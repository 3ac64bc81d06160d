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
                    "--stream")  # --keep-best and --early-stop are the saved run's, continued


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


AUGMENTATIONS = ("crop", "flip", "rotate", "shift", "jitter", "cutout")


def _augment(args):
    from .data import Augment, ColorJitter, Cutout, HorizontalFlip, RandomCrop, RandomRotation, RandomTranslation

    names = [n for n in (args.augment or "").split(",") if n]
    unknown = set(names) - set(AUGMENTATIONS)
    if unknown:
        raise UsageError(f"unknown augmentation {', '.join(sorted(unknown))}; choose from {', '.join(AUGMENTATIONS)}")
    made = {"crop": lambda: RandomCrop(pad=args.crop_pad), "flip": HorizontalFlip,
            "rotate": lambda: RandomRotation(args.rotate_degrees),
            "shift": lambda: RandomTranslation(args.shift_pixels),
            "jitter": lambda: ColorJitter(args.jitter_strength), "cutout": lambda: Cutout(args.cutout_size)}
    transforms = [made[name]() for name in names]
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
    _say_best(trainer.watch, trainer.best_path)
    return 0


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def _say_best(watch, best_path) -> None:
    """Which epoch was best, where it is kept, and whether the run stopped early (--keep-best, --early-stop)."""
    if watch is None or watch.epoch is None:
        return
    if watch.stopped:
        print(f"stopped early: {watch.monitor} has not improved for {_epochs(watch.patience)}; the best was "
              f"{watch.describe()}")
    if watch.keep:
        print(f"best: {watch.describe()} in {best_path}")


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
    from .interop import ddp, torch_engine, torch_setup

    worker = torch_engine.is_worker()
    try:
        device = torch_engine.resolve_device(args.device)
        if not worker and args.nproc > 1:
            ddp.check_workers(args.nproc, device, _worker_step_memory(args))
        torch_engine.check_sync_bn(args.sync_bn, device)
    except torch_setup.EngineError as error:
        raise UsageError(str(error)) from None
    if not worker and args.nproc > 1:
        if not args.resume:  # refused here once, not by every worker
            from .train.run_folder import RunFolder

            out = RunFolder(args.out or _default_out(args.arch, args.data))
            if out.holds_run() and not args.overwrite:
                raise UsageError(f"{out.path} already holds a run; continue it with --resume {out.checkpoint}, "
                                 "replace it with --overwrite, or choose another --out")
        backend = "nccl" if device == "cuda" else "gloo"
        print(f"engine: torch on {device}, {args.nproc} DistributedDataParallel workers ({backend})", flush=True)
        workers = ddp.launch(args.argv, args.nproc)
        sys.stderr.write(workers.output)  # the workers' own messages, once
        if workers.error:
            print(f"volnet train: error: {workers.error}", file=sys.stderr)
        return workers.code
    engine = torch_engine.TorchEngine(device, distributed=worker, sync_bn=args.sync_bn)
    if engine.rank != 0:  # one worker speaks for all; errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    elif not worker:
        print(f"engine: torch on {device}")
    args.engine_object = engine
    return None


def _worker_step_memory(args) -> int:
    """The training step's memory in one of ``--nproc`` workers, at its share of the batch (volnet.analysis),
    where the architecture alone gives the input (a zoo name, ``INPUT[HxWxD]``); 0 where only the data would."""
    from .analysis import analyze
    from .zoo import build_any

    if args.resume:
        return 0
    try:
        net = build_any(args.arch, allocate=False)
    except (ValueError, TypeError):  # notation without INPUT[...], unknown names: the workers will say so
        return 0
    memory = analyze(net, batch=-(-args.batch_size // args.nproc), optimizer=args.optimizer).memory("train")
    return memory.total + memory.params  # the volnet net's weights beside PyTorch's


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
    _fine_tune(net, args)
    if args.engine_object is None:  # the NumPy engine's memory; PyTorch manages its own
        require_fit(net, min(args.batch_size, len(train)), "train", args.optimizer, what=f"training {args.arch}",
                    batch_flag="--batch-size")  # validation runs at the same batch, in less memory
    kwargs = {"momentum": args.momentum} if args.optimizer in ("momentum", "nesterov") else {}
    optimizer = make_optimizer(args.optimizer, net.trainable_params(), lr=args.lr, weight_decay=args.weight_decay,
                               **kwargs)
    data = {"name": args.data, "root": root, "size": args.size and list(args.size),
            "grayscale": args.grayscale, "val_split": args.val_split, "classes": list(full.classes)}
    if (args.keep_best or args.early_stop) and val is None:
        flag = "--keep-best" if args.keep_best else "--early-stop"
        raise UsageError(f"argument {flag}: it compares validation figures, and --val-split 0 holds out no "
                         "validation images; pass --val-split 0.1")
    class_weight = _class_weight(args.class_weight, train.labels, full.classes)
    trainer = Trainer(net, optimizer, train, val=val, epochs=args.epochs, batch_size=args.batch_size,
                      loss=args.loss, schedule=_schedule(args), augment=_augment(args),
                      normalizer=None if args.no_normalize else Normalizer.fit(train.images), seed=args.seed,
                      out_dir=out.path, overwrite=args.overwrite,
                      callbacks=[_progress_callback(sys.stdout), *_report_callbacks(args, out.path)],
                      extra_metadata={"data": data}, engine=args.engine_object, keep_best=args.keep_best,
                      early_stop=args.early_stop, class_weight=class_weight)
    workers = getattr(train.images, "workers", None)
    streamed = "" if workers is None else (f", streamed from disk ({workers} reading processes)" if workers else
                                           ", streamed from disk")
    print(f"data: {args.data}, {len(train)} training / {len(val) if val else 0} validation images of "
          f"{_shape(train.images.shape[1:])}, {len(full.classes)} classes{streamed}")
    print(net.summary())
    print(f"writing to {out.path}")
    return trainer


def _class_weight(spec, labels, classes):
    """--class-weight: None, "balanced" (from the training split's counts) or a JSON file, a list of C numbers
    or an object of class name -> number; printed, so the run says what it weighs."""
    import json

    from .train import balanced_class_weight

    if spec is None:
        return None
    if spec == "balanced":
        try:
            weights = balanced_class_weight(labels, len(classes)).tolist()
        except ValueError as error:
            raise UsageError(f"argument --class-weight: {error}") from None
    else:
        try:
            given = json.loads(Path(spec).read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"argument --class-weight: expected 'balanced' or a JSON file of weights, and {spec} "
                             f"cannot be read as one ({error})") from None
        if isinstance(given, dict):
            missing = [name for name in classes if name not in given]
            if missing:
                raise UsageError(f"argument --class-weight: {spec} gives no weight for class {missing[0]!r}; name "
                                 f"every class ({', '.join(classes)})")
            given = [given[name] for name in classes]
        ok = isinstance(given, list) and len(given) == len(classes) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0 for w in given)
        if not ok:
            raise UsageError(f"argument --class-weight: {spec} must hold {len(classes)} numbers > 0, one per class "
                             "(a JSON list, or an object of class name -> weight)")
        weights = [float(w) for w in given]
    print("class weights: " + ", ".join(f"{name} {w:.3g}" for name, w in zip(classes, weights)))
    return weights


def _fine_tune(net, args) -> None:
    """--init-from: copy the matching layers' weights and list the others; --freeze: freeze layers."""
    from .train.finetune import freeze, init_from

    if args.init_from:
        transfer = init_from(net, args.init_from)
        copied = ", ".join(map(str, transfer.copied)) or "none"
        print(f"initialised from {args.init_from}: layers {copied} copied")
        for index, why in transfer.fresh:
            print(f"  layer {index} ({type(net.layers[index - 1]).__name__}) initialised fresh: {why}")
    if args.freeze:
        try:
            frozen = freeze(net, args.freeze)
        except ValueError as error:
            raise UsageError(f"argument --freeze: {error}") from None
        prefix = net.frozen_prefix
        inference = (f"; layers 1-{prefix} run in inference mode and compute no gradient" if prefix else "")
        print(f"frozen: layers {', '.join(map(str, frozen))} (their weights stay as they are, the optimizer keeps "
              f"no state for them{inference})")


def _resumed_trainer(args):
    """The saved run, continued or extended; None (after saying so) when it is already complete."""
    from .data.split import split_validation
    from .train import Trainer
    from .train.checkpoint import BEST_NAME, CHECKPOINT_NAME, read, require_training_state, unpack_run

    refused = sorted(set(_given_options(args.train_parser, args.argv)) - set(RESUME_OVERRIDES))
    if refused:
        raise UsageError(f"{', '.join(refused)} cannot change a resumed run: --resume continues with the saved "
                         "run's settings; only --epochs (to extend it), --root (to find its data elsewhere) and "
                         f"{', '.join(f for f in RESUME_OVERRIDES if f not in ('--epochs', '--root', '--resume'))} "
                         "apply")
    resume = Path(args.resume)
    if resume.name == BEST_NAME and (resume.parent / CHECKPOINT_NAME).is_file():
        raise UsageError(f"argument --resume: {resume} is the run's best epoch, kept beside its last checkpoint; "
                         f"continue the run with --resume {resume.parent / CHECKPOINT_NAME}, or start a new run "
                         f"from these weights with --init-from {resume}")
    tensors, metadata = read(args.resume)
    require_training_state(metadata, args.resume)
    saved_epochs, position = metadata["train"]["epochs"], metadata["position"]
    done, batch = position["epoch"], position["batch"]
    epochs = saved_epochs if args.epochs is None else args.epochs
    if epochs < done or (epochs == done and batch):
        raise UsageError(f"argument --epochs: the run has already trained {_counted(done, 'epoch')}; pass more "
                         f"than {done} "
                         "to extend it, or leave --epochs out to finish it")
    best = metadata.get("best") or {}
    if best.get("stopped"):
        print(f"{args.resume}: the run stopped early after {_epochs(done)} ({best['monitor']} had not improved "
              f"for {_epochs(best['patience'])} since epoch {best['epoch']}), nothing to train")
        return None
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
    import json

    from .ops.losses import LOSSES
    from .train import predict
    from .train.checkpoint import describe, load_model
    import numpy as np

    from .train.loop import check_labelled, class_weights
    from .train.metrics import classification

    net, normalizer, _, metadata = load_model(args.checkpoint)
    reading = describe(args.checkpoint, metadata)
    if not args.json:
        print(f"reading {reading}")
    data = metadata.get("data", {})
    name = args.data or data.get("name")
    if name is None:
        raise UsageError("this checkpoint does not record its data set; pass --data")
    root = args.root or data.get("root")
    test = _load_data(name, root, args.split, data.get("size") and tuple(data["size"]), data.get("grayscale", False))
    from .analysis import require_fit

    batch = min(args.batch_size, len(test))
    require_fit(net, batch, "inference", what=f"evaluating {args.checkpoint}", batch_flag="--batch-size")
    check_labelled(net, test.images, test.labels, "evaluation")
    scores = predict(net, test.images, batch, transform=normalizer).reshape(len(test), -1)
    class_weight = metadata.get("train", {}).get("class_weight")  # the run's --class-weight weighs the loss here too
    loss = float(LOSSES[metadata.get("train", {}).get("loss", "softmax")](
        scores, test.labels, **class_weights(class_weight, test.labels))[0])
    classes = data.get("classes") or test.classes
    figures = classification(scores, test.labels, classes, top_k=args.top_k, loss=loss)
    weighted = {}
    if class_weight is not None:
        w = np.asarray(class_weight)[test.labels]
        weighted = {"class_weight": class_weight,
                    "weighted_accuracy": float((w * (scores.argmax(axis=1) == test.labels)).sum() / w.sum())}
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "reading": reading, "data": name, "split": args.split,
                          **figures.to_dict(), **weighted}, indent=2))
        return 0
    epoch = f" (epoch {metadata['position']['epoch']})" if "position" in metadata else ""
    print(f"{args.checkpoint}{epoch} on {name} {args.split}: accuracy {figures.accuracy:.2%}, "
          f"loss {loss:.4f}, {len(test)} images")
    print(figures.table())
    if weighted:
        print(f"with the run's class weights (--class-weight): the loss above is their weighted mean; weighted "
              f"accuracy {weighted['weighted_accuracy']:.2%} (balanced accuracy, the mean per-class recall, is "
              f"{figures.recall.mean():.2%})")
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
    if args.slide:
        return _predict_sliding(args)
    if args.heatmap:
        raise UsageError("--heatmap needs --slide (the score map comes from sliding the net over the image)")
    from .train.model import load

    model = load(args.checkpoint)
    k = min(args.top_k, len(model.classes))
    writer = _prediction_writer(args, k)
    bar = _image_progress(args.images)

    def on_image(prediction):
        writer(prediction)
        if bar is not None:
            bar.update(1)

    try:
        model.predict_files(args.images, on_image=on_image)
    finally:
        if bar is not None:
            bar.close()
    return 0


def _prediction_writer(args, k: int):
    """What prints one image's prediction: a line of text, a JSON Lines record (--json) or a CSV row (--csv)."""
    import csv
    import json

    if args.json and args.csv:
        raise UsageError("--json and --csv: choose one")
    if args.json:
        def write(prediction):
            print(json.dumps({"path": str(prediction.path), "note": prediction.note,
                              "top": [{"class": name, "probability": p} for name, p in prediction.top(k)]}),
                  flush=True)
    elif args.csv:
        rows = csv.writer(sys.stdout, lineterminator="\n")
        rows.writerow(["path", *(f"{field}_{i}" for i in range(1, k + 1) for field in ("class", "probability")),
                       "note"])

        def write(prediction):
            rows.writerow([str(prediction.path), *(value for pair in prediction.top(k) for value in pair),
                           prediction.note])
            sys.stdout.flush()
    else:
        def write(prediction):
            if prediction.note:  # how the image was changed to fit the net: RGBA to grayscale, 640x480 to 28x28...
                print(f"{prediction.path}: {prediction.note}")
            print(f"{prediction.path}: " + ", ".join(f"{name} {p:.1%}" for name, p in prediction.top(k)),
                  flush=True)
    return write


def _image_progress(paths):
    """A tqdm bar on stderr when a folder is predicted and stderr is a terminal (else None)."""
    if not any(Path(path).is_dir() for path in paths) or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    from .data.folder import image_paths

    return tqdm(total=len(image_paths(paths)), unit="image", file=sys.stderr, leave=False, dynamic_ncols=True)


def _predict_sliding(args) -> int:
    import numpy as np

    from .convert import slide, sliding_size
    from .ops import softmax
    from .data.images import read_image_with_note
    from .train.checkpoint import load_model

    if args.json or args.csv:
        raise UsageError("--json and --csv write plain predictions; leave out --slide")
    net, normalizer, _, metadata = load_model(args.checkpoint)
    classes = metadata.get("data", {}).get("classes") or [str(i) for i in range(net.output_shape[-1])]
    H, W, D = net.input_shape
    if args.heatmap and len(args.images) != 1:
        raise UsageError("--heatmap draws one image; pass a single IMAGE")
    if args.heatmap:
        _refuse_writing_over_inputs(args.heatmap, [args.checkpoint, *args.images], "--heatmap")
    size = sliding_size(net, args.scale)
    # before any image is read: refuse a scale the machine cannot hold
    from .convert.sliding import require_sliding_memory

    require_sliding_memory(net, args.scale, len(args.images), heatmap=bool(args.heatmap))
    read = [read_image_with_note(path, size=size, grayscale=D == 1) for path in args.images]
    for path, (_, note) in zip(args.images, read):
        if note:  # say how an image was changed to fit the net: RGBA to grayscale, 640x480 to 28x28...
            print(f"{path}: {note}")
    raw = np.stack([volume for volume, _ in read])
    images = normalizer(raw) if normalizer is not None else raw
    score_map, scores = slide(net, images)
    print(f"sliding the {H}x{W} net over {size[0]}x{size[1]} images: "
          f"{score_map.shape[1]}x{score_map.shape[2]} positions averaged")
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

    from .train.checkpoint import describe, read
    from .viz.report import write_report

    _refuse_writing_over_inputs(args.output, [args.checkpoint, *args.images], "-o/--output")
    if os.path.lexists(args.output) and not args.overwrite:
        raise UsageError(f"argument -o/--output: {args.output} already exists; replace it with --overwrite, or "
                         "choose another -o")
    print(f"reading {describe(args.checkpoint, read(args.checkpoint)[1])}")
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
    from .train.checkpoint import describe, load_model

    _refuse_writing_over_inputs(args.output, [args.checkpoint], "MODEL.onnx")
    net, normalizer, tensors, metadata = load_model(args.checkpoint)
    del tensors  # copied into net: the export's memory is free of them
    print(f"reading {describe(args.checkpoint, metadata)}")
    included = normalizer if args.raw_pixels else None
    to_onnx(net, args.output, normalizer=included, layout=args.layout,
            classes=metadata.get("data", {}).get("classes"), probabilities=args.probabilities)
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
    if len(shape) == 1:
        what = " class probabilities (softmax)" if args.probabilities else " class scores (before softmax)"
    else:
        what = f" ({args.layout.upper()}{', softmax over the depth' if args.probabilities else ''})"
    print(f"  output: float32 N x {' x '.join(map(str, shape))}{what}")
    return 0


def cmd_check(args) -> int:
    from .check import CheckUsageError, check
    try:
        report = check(args.file, cases=args.cases, time_limit=args.time_limit, api=args.api)
    except CheckUsageError as error:
        raise UsageError(str(error)) from None
    print(report.to_json() if args.json else report.text())
    return 0 if report.passed else 1


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
    train.add_argument("--augment",
                       help="comma-separated, applied in this order: crop (random crop after zero padding), flip, "
                            "rotate, shift (translate), jitter (brightness, contrast, saturation), cutout; "
                            "see docs/training.md")
    train.add_argument("--crop-pad", type=_count, default=4, help="zero padding before a random crop")
    train.add_argument("--rotate-degrees", type=_number(float, "a number in [0, 180]", lambda v: 0 <= v <= 180),
                       default=10.0, help="largest rotation either way for --augment rotate")
    train.add_argument("--shift-pixels", type=_non_negative_float, default=2.0,
                       help="largest move along each axis for --augment shift")
    train.add_argument("--jitter-strength", type=_fraction, default=0.2,
                       help="factors in [1 - s, 1 + s] for --augment jitter")
    train.add_argument("--cutout-size", type=_count, default=8, help="side of the zeroed square for --augment cutout")
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
    train.add_argument("--early-stop", type=_positive_int, metavar="N",
                       help="stop after N epochs without improvement of the --keep-best figure (val_loss without "
                            "--keep-best) and say which epoch was best")
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

    evaluate = sub.add_parser("eval", help="accuracy, confusion matrix, per-class precision/recall/F1 and top-k "
                                           "accuracy of a checkpoint on a test set", formatter_class=formatter)
    evaluate.add_argument("checkpoint", help="a checkpoint file written by volnet train (in its --out folder)")
    evaluate.add_argument("--data", choices=["mnist5k", "mnist", "cifar10", "folder"],
                          help="data set (default: the one it was trained on)")
    evaluate.add_argument("--root", help="folder holding the data set's files")
    evaluate.add_argument("--split", choices=["train", "test"], default="test", help="which split")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256, help="images per forward pass")
    evaluate.add_argument("--top-k", type=_positive_int, nargs="+", default=[1, 3, 5], metavar="K",
                          help="top-k accuracies to report (those above the number of classes are left out)")
    evaluate.add_argument("--json", action="store_true",
                          help="print every figure as JSON for scripts: accuracy, loss, top-k, the confusion "
                               "matrix, per-class precision, recall, F1 and support")
    evaluate.set_defaults(run=cmd_eval)

    predict = sub.add_parser("predict", help="top-k classes for image files", formatter_class=formatter)
    predict.add_argument("checkpoint", help="a checkpoint file written by volnet train (in its --out folder)")
    predict.add_argument("images", nargs="+", metavar="IMAGE",
                         help="PNG/JPEG files, or folders of them (converted to the net's input size and colours)")
    predict.add_argument("--top-k", type=_positive_int, default=3, help="how many classes to show")
    predict.add_argument("--json", action="store_true",
                         help="one JSON record per line and image: path, note, top classes with probabilities")
    predict.add_argument("--csv", action="store_true",
                         help="CSV with a header: path, class_1, probability_1, ..., note; one row per image")
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
    check.add_argument("--cases", type=_positive_int, default=100, help="random configurations per function")
    check.add_argument("--time-limit", type=_positive_float, default=20.0,
                       help="seconds per function: the search stops after half, a call still running is stopped")
    check.set_defaults(run=cmd_check)
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
