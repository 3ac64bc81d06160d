"""Setting up a training run from plain settings: the data, the network, the trainer, new or resumed.

What ``volnet train`` does before its first step, callable from Python::

    trainer = new_trainer("lenet", "mnist5k", out="runs/lenet", epochs=2, say=print)
    trainer.run()

Every setting has the name and default of its ``volnet train`` flag
(``batch_size`` for ``--batch-size``); a bad combination raises
:class:`SetupError`, whose message names the flag. Nothing here prints:
``say``, where given, is called with each line the command prints
(what was loaded, built, copied or frozen).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from .run_folder import RunFolder

DEFAULT_EPOCHS = 8
AUGMENTATIONS = ("crop", "flip", "rotate", "shift", "jitter", "cutout")


class SetupError(ValueError):
    """A bad combination of settings (``volnet train``'s usage error, exit code 2); the message names the flag."""


def _silent(line: str) -> None:
    pass


def counted(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"8 epochs"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def default_out(arch: str, data: str) -> Path:
    """``runs/ARCH-DATA`` for a zoo name; a notation gets a short stable name instead of nested folders."""
    from ..zoo import ARCHITECTURES

    if arch in ARCHITECTURES:
        return Path("runs") / f"{arch}-{data}"
    return Path("runs") / f"net-{hashlib.sha1(arch.encode()).hexdigest()[:8]}-{data}"


def new_run_folder(out, overwrite: bool = False) -> RunFolder:
    """The run folder ``out`` for a new run; :class:`SetupError` where it already holds one and not ``overwrite``."""
    folder = RunFolder(out)
    if folder.holds_run() and not overwrite:
        raise SetupError(f"{folder.path} already holds a run; continue it with --resume {folder.checkpoint}, replace "
                         "it with --overwrite, or choose another --out")
    return folder


# -- data ----------------------------------------------------------------------

def load_data(name: str, root, split: str, size=None, grayscale: bool = False, stream: bool = False,
              workers: int = 0):
    """:func:`volnet.data.load` with the options ``volnet train`` offers (``size``, ``grayscale`` and ``stream``
    are for ``"folder"`` alone: :class:`SetupError` otherwise)."""
    from ..data import load

    options = {}
    if name == "folder":
        options = {"size": size, "grayscale": grayscale}
        if stream:
            options.update(stream=True, workers=workers)
    elif size is not None or grayscale or stream:
        raise SetupError("--size, --grayscale and --stream apply to --data folder only")
    return load(name, root=root, split=split, **options)


def checkpoint_data(metadata: dict, split: str, *, name: str | None = None, root=None, stream: bool = False,
                    workers: int = 0):
    """The ``split`` of the data set a checkpoint's header records (its name, folder, image size and colours), as
    ``eval``, ``--resume`` and the report read it. ``name`` and ``root`` replace the recorded ones where given.

    Raises:
        SetupError: the header records no data set and no ``name`` is given.
        DataError, OSError: the data cannot be read.
    """
    data = metadata.get("data", {})
    name = name or data.get("name")
    if name is None:
        raise SetupError("this checkpoint does not record its data set; pass --data")
    size = data.get("size") and tuple(data["size"])
    return load_data(name, root or data.get("root"), split, size, data.get("grayscale", False), stream, workers)


def stream_workers(engine) -> int:
    """Processes reading streamed batches ahead: on the PyTorch engine half the cores, at most 4; the NumPy
    engine (``engine=None``) reads in its own process (PyTorch's DataLoader is what starts the readers)."""
    return 0 if engine is None else max(1, min(4, (os.cpu_count() or 2) // 2))


# -- the pieces of a new run ---------------------------------------------------

def build_for_data(arch: str, image_shape, classes: int, data: str, seed: int = 0):
    """The net for the data's images; a zoo net made for another image size says so, not a stride error."""
    from ..shapes import ShapeError
    from ..spec import SpecError
    from ..zoo import ARCHITECTURES, UnknownArchitecture, build_any, build_named

    try:
        return build_any(arch, image_shape, classes, seed=seed)
    except (UnknownArchitecture, SpecError) as error:
        raise SetupError(f"argument --arch: {error}") from None
    except ShapeError as error:
        if arch not in ARCHITECTURES:
            raise SetupError(f"argument --arch: {error}") from None
        native = build_named(arch, allocate=False).input_shape
        if tuple(native) == tuple(image_shape):
            raise
        fitting = [name for name in ARCHITECTURES
                   if build_named(name, allocate=False).input_shape == tuple(image_shape)]
        hint = f"; architectures made for {_shape(image_shape)}: {', '.join(fitting)}" if fitting else ""
        raise SetupError(f"argument --arch: {arch} expects {_shape(native)} images, {data} images are "
                         f"{_shape(image_shape)}{hint}") from None


def make_schedule(schedule: str, lr: float, epochs: int, *, step_every: int = 10, gamma: float = 0.1,
                  warmup: int = 0):
    """The learning-rate schedule ``"none"``, ``"step"`` or ``"cosine"``, after ``warmup`` epochs of linear warm-up
    (None: the constant ``lr``)."""
    from ..optim import CosineAnnealing, LinearWarmup, StepDecay

    made = None
    if schedule == "step":
        made = StepDecay(lr, every=step_every, gamma=gamma)
    elif schedule == "cosine":
        made = CosineAnnealing(lr, T=epochs - warmup)
    if warmup:
        from ..optim import Constant

        made = LinearWarmup(made or Constant(lr), warmup=warmup)
    return made


def make_augment(names: str | None, *, crop_pad: int = 4, rotate_degrees: float = 10.0, shift_pixels: float = 2.0,
                 jitter_strength: float = 0.2, cutout_size: int = 8):
    """The comma-separated augmentations of ``names`` (:data:`AUGMENTATIONS`), applied in that order; None for none."""
    from ..data import Augment, ColorJitter, Cutout, HorizontalFlip, RandomCrop, RandomRotation, RandomTranslation

    chosen = [n for n in (names or "").split(",") if n]
    unknown = set(chosen) - set(AUGMENTATIONS)
    if unknown:
        raise SetupError(f"unknown augmentation {', '.join(sorted(unknown))}; choose from {', '.join(AUGMENTATIONS)}")
    made = {"crop": lambda: RandomCrop(pad=crop_pad), "flip": HorizontalFlip,
            "rotate": lambda: RandomRotation(rotate_degrees), "shift": lambda: RandomTranslation(shift_pixels),
            "jitter": lambda: ColorJitter(jitter_strength), "cutout": lambda: Cutout(cutout_size)}
    transforms = [made[name]() for name in chosen]
    return Augment(transforms) if transforms else None


def weigh_classes(spec: str | None, labels, classes) -> list[float] | None:
    """``--class-weight``: None, ``"balanced"`` (from the training split's counts) or a JSON file, a list of C
    numbers or an object of class name -> number."""
    from .class_weight import balanced_class_weight

    if spec is None:
        return None
    if spec == "balanced":
        try:
            return balanced_class_weight(labels, len(classes)).tolist()
        except ValueError as error:
            raise SetupError(f"argument --class-weight: {error}") from None
    try:
        given = json.loads(Path(spec).read_text())
    except (OSError, ValueError) as error:
        raise SetupError(f"argument --class-weight: expected 'balanced' or a JSON file of weights, and {spec} "
                         f"cannot be read as one ({error})") from None
    if isinstance(given, dict):
        missing = [name for name in classes if name not in given]
        if missing:
            raise SetupError(f"argument --class-weight: {spec} gives no weight for class {missing[0]!r}; name "
                             f"every class ({', '.join(classes)})")
        given = [given[name] for name in classes]
    ok = isinstance(given, list) and len(given) == len(classes) and all(
        isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0 for w in given)
    if not ok:
        raise SetupError(f"argument --class-weight: {spec} must hold {len(classes)} numbers > 0, one per class "
                         "(a JSON list, or an object of class name -> weight)")
    return [float(w) for w in given]


def fine_tune(net, init_from=None, freeze: str | None = None, say=_silent) -> None:
    """``init_from``: copy the matching layers' weights of that checkpoint and say which others start fresh;
    ``freeze``: freeze those layers (``"1-6"``, ``"CONV"``...: :func:`volnet.train.finetune.freeze`)."""
    from .finetune import freeze as freeze_layers, init_from as copy_from

    if init_from:
        transfer = copy_from(net, init_from)
        copied = ", ".join(map(str, transfer.copied)) or "none"
        say(f"initialised from {init_from}: layers {copied} copied")
        for index, why in transfer.fresh:
            say(f"  layer {index} ({type(net.layers[index - 1]).__name__}) initialised fresh: {why}")
    if freeze:
        try:
            frozen = freeze_layers(net, freeze)
        except ValueError as error:
            raise SetupError(f"argument --freeze: {error}") from None
        prefix = net.frozen_prefix
        inference = (f"; layers 1-{prefix} run in inference mode and compute no gradient" if prefix else "")
        say(f"frozen: layers {', '.join(map(str, frozen))} (their weights stay as they are, the optimizer keeps "
            f"no state for them{inference})")


# -- the trainer ---------------------------------------------------------------

def new_trainer(arch: str = "lenet", data: str = "mnist5k", *, out=None, overwrite: bool = False, root=None,
                size=None, grayscale: bool = False, stream: bool = False, epochs: int | None = None,
                batch_size: int = 64, optimizer: str = "adam", lr: float = 0.002, momentum: float = 0.9,
                weight_decay: float = 0.0, schedule: str = "none", step_every: int = 10, gamma: float = 0.1,
                warmup: int = 0, augment: str | None = None, crop_pad: int = 4, rotate_degrees: float = 10.0,
                shift_pixels: float = 2.0, jitter_strength: float = 0.2, cutout_size: int = 8,
                normalize: bool = True, val_split: float = 0.1, loss: str = "softmax", seed: int = 0,
                class_weight: str | None = None, init_from=None, freeze: str | None = None,
                keep_best: str | None = None, early_stop: int | None = None, engine=None, callbacks=(),
                say=_silent):
    """A :class:`~volnet.train.Trainer` for a new run into ``out`` (default: :func:`default_out`), as
    ``volnet train`` builds it: the data (``root``, ``size``...), its validation split, the net for its images
    (``init_from``, ``freeze``), optimizer, schedule, augmentation, normalisation and class weights.

    ``engine``: None for the NumPy engine, or a :class:`volnet.interop.torch_engine.TorchEngine`. The folder is
    created before the data is read (and removed again, where it was new, when the set-up fails).

    Raises:
        SetupError: a bad combination of settings, or ``out`` already holds a run and not ``overwrite``.
    """
    from ..analysis import require_fit
    from ..data import Normalizer
    from ..data.split import split_validation
    from ..optim import make_optimizer
    from .trainer import Trainer

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    if warmup >= epochs:
        raise SetupError(f"argument --warmup: {counted(warmup, 'epoch')} of warm-up leave none of the {epochs} "
                         "--epochs; use a smaller --warmup")
    folder = new_run_folder(out or default_out(arch, data), overwrite)
    created = [path for path in (folder.path, *folder.path.parents) if not path.exists()]  # innermost first
    folder.prepare()  # an unwritable out is found before the data is read and the first epoch trained
    try:
        root = str(Path(root).resolve()) if root else None
        size = size and tuple(size)
        full = load_data(data, root, "train", size, grayscale, stream, stream_workers(engine))
        train, val = split_validation(full, val_split, seed=seed)
        net = build_for_data(arch, train.images.shape[1:], len(full.classes), data, seed)
        fine_tune(net, init_from, freeze, say)
        if engine is None:  # the NumPy engine's memory; PyTorch manages its own
            require_fit(net, min(batch_size, len(train)), "train", optimizer, what=f"training {arch}",
                        batch_flag="--batch-size")  # validation runs at the same batch, in less memory
        kwargs = {"momentum": momentum} if optimizer in ("momentum", "nesterov") else {}
        update_rule = make_optimizer(optimizer, net.trainable_params(), lr=lr, weight_decay=weight_decay, **kwargs)
        recorded = {"name": data, "root": root, "size": size and list(size), "grayscale": grayscale,
                    "val_split": val_split, "classes": list(full.classes)}
        if (keep_best or early_stop) and val is None:
            flag = "--keep-best" if keep_best else "--early-stop"
            raise SetupError(f"argument {flag}: it compares validation figures, and --val-split 0 holds out no "
                             "validation images; pass --val-split 0.1")
        weights = weigh_classes(class_weight, train.labels, full.classes)
        if weights is not None:  # said, so the run says what it weighs
            say("class weights: " + ", ".join(f"{name} {w:.3g}" for name, w in zip(full.classes, weights)))
        trainer = Trainer(
            net, update_rule, train, val=val, epochs=epochs, batch_size=batch_size, loss=loss,
            schedule=make_schedule(schedule, lr, epochs, step_every=step_every, gamma=gamma, warmup=warmup),
            augment=make_augment(augment, crop_pad=crop_pad, rotate_degrees=rotate_degrees, shift_pixels=shift_pixels,
                                 jitter_strength=jitter_strength, cutout_size=cutout_size),
            normalizer=Normalizer.fit(train.images) if normalize else None, seed=seed, out_dir=folder.path,
            overwrite=overwrite, callbacks=list(callbacks), extra_metadata={"data": recorded}, engine=engine,
            keep_best=keep_best, early_stop=early_stop, class_weight=weights)
        workers = getattr(train.images, "workers", None)
        streamed = "" if workers is None else (f", streamed from disk ({workers} reading processes)" if workers else
                                               ", streamed from disk")
        say(f"data: {data}, {len(train)} training / {len(val) if val else 0} validation images of "
            f"{_shape(train.images.shape[1:])}, {len(full.classes)} classes{streamed}")
        say(net.summary())
        say(f"writing to {folder.path}")
        return trainer
    except BaseException:
        for path in created:  # a run refused before training leaves no empty folders behind
            try:
                path.rmdir()
            except OSError:
                break
        raise


def resumed_trainer(checkpoint, *, epochs: int | None = None, root=None, stream: bool = False, engine=None,
                    callbacks=(), say=_silent):
    """The saved run of ``checkpoint`` continued (``epochs`` beyond its total extends it; ``root`` finds its data
    elsewhere), or None (after saying why) when there is nothing to train.

    Raises:
        SetupError: ``checkpoint`` is a run's best epoch kept beside its last checkpoint, or ``epochs`` is fewer
            than the run has trained.
        CheckpointError: the file is not a checkpoint with its training state.
    """
    from ..data.split import split_validation
    from .checkpoint import BEST_NAME, CHECKPOINT_NAME, read, require_training_state, unpack_run
    from .trainer import Trainer

    path = Path(checkpoint)
    if path.name == BEST_NAME and (path.parent / CHECKPOINT_NAME).is_file():
        raise SetupError(f"argument --resume: {checkpoint} is the run's best epoch, kept beside its last checkpoint; "
                         f"continue the run with --resume {path.parent / CHECKPOINT_NAME}, or start a new run "
                         f"from these weights with --init-from {checkpoint}")
    tensors, metadata = read(checkpoint)
    require_training_state(metadata, checkpoint)
    saved_epochs, position = metadata["train"]["epochs"], metadata["position"]
    done, batch = position["epoch"], position["batch"]
    total = saved_epochs if epochs is None else epochs
    if total < done or (total == done and batch):
        raise SetupError(f"argument --epochs: the run has already trained {counted(done, 'epoch')}; pass more "
                         f"than {done} to extend it, or leave --epochs out to finish it")
    best = metadata.get("best") or {}
    if best.get("stopped"):
        say(f"{checkpoint}: the run stopped early after {counted(done, 'epoch')} ({best['monitor']} had not improved "
            f"for {counted(best['patience'], 'epoch')} since epoch {best['epoch']}), nothing to train")
        return None
    if total == done:
        unpack_run(tensors, metadata, checkpoint)  # nothing to train, but a damaged file is still said to be one
        extend = f"; pass --epochs N (more than {done}) to extend it" if epochs is None else ""
        say(f"{checkpoint}: the run is complete ({done} of {counted(saved_epochs, 'epoch')}), nothing to "
            f"train{extend}")
        return None
    root = root and str(Path(root).resolve())
    full = checkpoint_data(metadata, "train", root=root, stream=stream, workers=stream_workers(engine))
    train, val = split_validation(full, metadata["data"]["val_split"], seed=metadata["train"]["seed"])
    trainer = Trainer.from_checkpoint(checkpoint, train, val=val, callbacks=list(callbacks),
                                      state=(tensors, metadata), engine=engine)
    if root:
        trainer.extra_metadata["data"] = {**metadata["data"], "root": root}
    say(f"resuming {checkpoint} at epoch {done + 1}, batch {batch + 1} of a run of "
        f"{counted(saved_epochs, 'epoch')}")
    if total != saved_epochs:
        trainer.extend(total)
        schedule = trainer.schedule
        follows = "" if schedule is None else (
            f"; the {schedule.get_config()['name']} schedule is fitted to {counted(total, 'epoch')} "
            f"(learning rate {schedule.lr_at(done):.3g} in epoch {done + 1})")
        say(f"extending the run from {saved_epochs} to {counted(total, 'epoch')}{follows}")
    return trainer
