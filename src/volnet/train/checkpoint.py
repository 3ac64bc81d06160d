"""The checkpoint format: one safetensors file holding a run's weights and a JSON description.

This module owns the format: the names of a run folder's files
(:data:`CHECKPOINT_NAME`, :data:`HISTORY_NAMES`), the packing of a run's state
into tensors and a header and back (:func:`pack_run`, :func:`unpack_run`), the
header's schema (:data:`HEADER`), and reading and writing (:func:`read`,
:func:`save`). The trainer and :class:`~volnet.train.model.Model` call it;
neither knows a tensor name or a header field. Beside it, each with one job:
:mod:`~volnet.train.schema` (the language the header's table is written in),
:mod:`~volnet.train.restore` (tensors and generator states into live objects),
:mod:`~volnet.train.history` and :mod:`~volnet.train.state` (a run's state as
objects) and :mod:`volnet.files` (atomic writing).

Layout of ``checkpoint.safetensors``:

* tensors ``layers.<i>.<name>``: parameters and buffers of layer i (1-based,
  as in ``net.summary()``), finite floats;
* tensors ``optimizer.<state>.<j>``: the optimizer's per-parameter caches,
  finite floats shaped like parameter j;
* tensor ``trainer.order``: mid-epoch only, the epoch's shuffled order (a
  permutation of the training set's indices);
* header metadata ``volnet``: a JSON document with the architecture, the
  optimizer's configuration and scalars, the schedule, the epoch and batch
  reached, every random generator's state, the data normalisation and the
  history so far.

Reading checks the whole file before anything is built from it: the
header against :data:`HEADER` (a table of every field and what it must be),
every tensor's name, dtype and values, and that the architecture's layers
rebuild and fit together. Whatever fails raises :class:`CheckpointError`,
one line naming the file and the field::

    run/checkpoint.safetensors: field 'position.epoch' must be a non-negative integer, got 1.5

A checkpoint may hold a model only (``architecture``, ``normalizer``,
``data``): :func:`load_model` reads it; resuming a run needs the
:data:`TRAINING_FIELDS` too (:func:`require_training_state`).

Keeping everything in one file makes saving atomic: the bytes go to a
temporary file in the same folder, are flushed to disk (fsync), and the
temporary file is renamed over the old checkpoint, so a crash or Ctrl-C at
any moment leaves either the old checkpoint or the new one, never half of
one. Nothing is ever unpickled: safetensors holds raw arrays and JSON text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes
from ..ops.losses import LOSSES
from .history import EpochRecord, History
from .restore import (BIT_GENERATORS, build_network, epoch_order, generator_state, layer_generators,
                      load_network_tensors, load_optimizer_state, network_tensors, restore_generator,
                      restore_layer_generators)
from .schema import (BAD_CONFIG, COUNT, FLAG, FRACTION, NON_NEGATIVE, NUMBER, POSITIVE, POSITIVE_NUMBER, SIZE, TEXT,
                     VAL_SPLIT, VOLUME, CheckpointError, ListOf, MapOf, Mismatch, Nullable, Obj, Rebuilds, is_int,
                     one_of, reason, show, validate)
from .state import Position, RunSettings, RunState

FORMAT = "volnet-checkpoint"
VERSION = 1
# The files of a run folder (see volnet.train.run_folder): the checkpoint, and the history as JSON and CSV.
CHECKPOINT_NAME = "checkpoint.safetensors"
# The run's best epoch so far (--keep-best), a whole checkpoint too, beside the last one.
BEST_NAME = "best.safetensors"
HISTORY_NAMES = ("history.json", "history.csv")
# What a run needs to continue; a model-only checkpoint (architecture, normalizer, data) has none of it.
TRAINING_FIELDS = ("optimizer", "schedule", "augment", "train", "position", "rng", "history")
# The header fields pack_run writes; any other field (data...) is a fact the caller stored, kept as it is.
RUN_FIELDS = ("format", "version", "architecture", "normalizer", "best", *TRAINING_FIELDS)
_TENSOR_NAME = re.compile(r"layers\.[1-9][0-9]*\.\w[\w.]*|optimizer\.\w+\.[0-9]+|trainer\.order")


def safetensors_module():
    """``safetensors.numpy``, or a :class:`CheckpointError` that says how to install it."""
    try:
        import safetensors.numpy
    except ImportError:
        raise CheckpointError(
            "checkpoints need the safetensors package: pip install safetensors "
            "(or, in volnet's folder, pip install '.[train]')"
        ) from None
    return safetensors.numpy


def save(path, tensors: dict[str, np.ndarray], metadata: dict) -> Path:
    """Save arrays and a JSON-able description atomically into one safetensors file."""
    header = {"format": FORMAT, "version": VERSION, **metadata}
    data = safetensors_module().save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                               metadata={"volnet": json.dumps(header)})
    return atomic_write_bytes(path, data)


# -- the header's schema (the language: volnet.train.schema) ---------------------------


def _layer(config):
    from ..layers.base import layer_from_config

    return layer_from_config(config)


def _optimizer(config):  # the hyperparameters, on no parameters: the network's come when a run resumes
    from ..optim import optimizer_from_config

    return optimizer_from_config([], config)


def _schedule(config):
    from ..optim import schedule_from_config

    return schedule_from_config(config)


def _augment(config):
    from ..data.augment import Augment

    return Augment.from_config(config)


def _normalizer(config):
    from ..data.augment import Normalizer

    return Normalizer.from_config(config)


def _watch(config):
    from .best import Watch

    return Watch.from_config(config)


def _epoch_record(record):
    return EpochRecord(**record)


GENERATOR = (Obj({"bit_generator": one_of(*BIT_GENERATORS), "state": MapOf(COUNT), "has_uint32": COUNT,
                  "uinteger": COUNT}),
             Rebuilds("a NumPy random generator", restore_generator))
NAMED = Obj({"name": TEXT})  # an optimizer's, schedule's or transform's config: {"name": ..., **arguments}

HEADER = Obj(
    required={
        "architecture": Obj(required={"input_shape": VOLUME, "layers": ListOf((Obj({"type": TEXT}),
                                                                               Rebuilds("a layer", _layer)))},
                            optional={"seed": COUNT, "dtype": one_of("float16", "float32", "float64")}),
    },
    optional={
        "normalizer": Nullable((Obj({"mean": ListOf(NUMBER), "std": ListOf(POSITIVE_NUMBER)}),
                                Rebuilds("a normalizer", _normalizer))),
        "data": Obj({}, optional={"name": TEXT, "root": Nullable(TEXT), "size": Nullable(SIZE), "grayscale": FLAG,
                                  "val_split": VAL_SPLIT, "classes": ListOf(TEXT)}),
        # the training state: none of it in a model-only checkpoint, all of it to resume (require_training_state)
        "optimizer": Obj({"config": (NAMED, Rebuilds("an optimizer", _optimizer)),
                          "scalars": Obj({"steps": COUNT, "lr": NON_NEGATIVE})}),
        "schedule": Nullable((NAMED, Rebuilds("a learning-rate schedule", _schedule))),
        "augment": Nullable((Obj({"transforms": ListOf(NAMED)}), Rebuilds("an augmentation", _augment))),
        "train": Obj({"epochs": POSITIVE, "batch_size": POSITIVE, "loss": one_of(*LOSSES), "seed": COUNT},
                     # --freeze: layers the optimizer leaves out; --class-weight: one weight per class
                     optional={"frozen": ListOf(POSITIVE), "class_weight": ListOf(POSITIVE_NUMBER)}),
        "position": Obj({"epoch": COUNT, "batch": COUNT, "loss_sum": NON_NEGATIVE, "correct": COUNT, "seen": COUNT,
                         "seconds": NON_NEGATIVE}),
        "rng": Obj({"trainer": GENERATOR, "layers": MapOf(GENERATOR)}),
        # --keep-best / --early-stop (volnet.train.best.Watch); absent in runs without them and older checkpoints
        "best": (Obj({"monitor": TEXT}, optional={"keep": FLAG, "patience": Nullable(POSITIVE),
                                                  "epoch": Nullable(POSITIVE), "score": Nullable(NUMBER),
                                                  "stopped": FLAG}),
                 Rebuilds("a best-epoch watch", _watch)),
        "history": ListOf((Obj({"epoch": POSITIVE, "lr": NON_NEGATIVE, "train_loss": NON_NEGATIVE,
                                "train_accuracy": FRACTION, "val_loss": Nullable(NON_NEGATIVE),
                                "val_accuracy": Nullable(FRACTION), "seconds": NON_NEGATIVE,
                                "images_per_second": NON_NEGATIVE}),
                           Rebuilds("an epoch record", _epoch_record))),
    },
)


def _check_consistency(metadata: dict, tensors: dict) -> None:
    """What no single field shows: fields that must agree with each other and with the tensors."""
    position, run = metadata.get("position"), metadata.get("train")
    if position is not None:
        batch, seen, order = position["batch"], position["seen"], tensors.get("trainer.order")
        if batch and not seen:
            raise Mismatch("position.seen", f"is 0 but position.batch says {batch} batches are done")
        if position["correct"] > seen:
            raise Mismatch("position.correct", f"is {position['correct']} but position.seen is only {seen}")
        if batch and order is None:
            raise Mismatch("position.batch", f"is {batch} but the tensor 'trainer.order' (the epoch's shuffled "
                                              "order) is missing")
        batches = -(-len(order) // run["batch_size"]) if batch and run is not None else batch
        if batch > batches:
            raise Mismatch("position.batch", f"is {batch} but an epoch of {len(order)} images has only {batches} "
                                              f"batches of {run['batch_size']} (train.batch_size)")
    normalizer, depth = metadata.get("normalizer"), metadata["architecture"]["input_shape"][-1]
    if normalizer and len(normalizer["mean"]) != depth:
        raise Mismatch("normalizer.mean", f"has {len(normalizer['mean'])} channels but the network's input "
                                           f"has depth {depth} (architecture.input_shape)")


def _check_architecture(path, metadata: dict) -> None:
    """The layers fit together and with the data's classes: shapes only, nothing allocated."""
    from ..analysis import analyze_layers

    config = metadata["architecture"]
    try:
        output = analyze_layers([_layer(c) for c in config["layers"]], config["input_shape"]).output_shape
    except BAD_CONFIG as error:
        raise CheckpointError(f"{path}: field 'architecture' does not fit together: {reason(error)}") from None
    if len(output) == 3 and tuple(output[:2]) != (1, 1):
        raise CheckpointError(f"{path}: field 'architecture' ends in a {'x'.join(map(str, output))} volume, not in "
                              "class scores (an FC layer, or GAP's 1x1xK)")
    classes = (metadata.get("data") or {}).get("classes")
    if classes is not None and len(classes) != output[-1]:
        raise CheckpointError(f"{path}: field 'data.classes' names {len(classes)} classes but the network "
                              f"(architecture) has {output[-1]} outputs")


def _check_tensors(path, tensors: dict) -> None:
    """Every tensor has a name of the format; weights and optimizer state are finite floats; the order a permutation."""
    for name, array in tensors.items():
        if not _TENSOR_NAME.fullmatch(name):
            raise CheckpointError(f"{path}: tensor {name!r} is none the format has (layers.<i>.<name>, "
                                  "optimizer.<state>.<j>, trainer.order)")
        if name == "trainer.order":
            if array.ndim != 1 or array.dtype.kind not in "iu":
                raise CheckpointError(f"{path}: tensor 'trainer.order' must be a 1-D array of integers, got "
                                      f"{array.dtype} of shape {array.shape}")
            if not np.array_equal(np.sort(array), np.arange(array.size)):
                raise CheckpointError(f"{path}: tensor 'trainer.order' must be a permutation of 0..{array.size - 1} "
                                      "(the epoch's shuffled order)")
        elif array.dtype.kind != "f":
            raise CheckpointError(f"{path}: tensor {name!r} must hold floating-point numbers, got {array.dtype}")
        elif not np.isfinite(array).all():
            bad = array.size - np.count_nonzero(np.isfinite(array))
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or Inf ({bad:,} of {array.size:,} values)")


def read(path) -> tuple[dict[str, np.ndarray], dict]:
    """``(tensors, metadata)`` of a checkpoint, checked; a one-line :class:`CheckpointError` for anything else.

    Checks the header against :data:`HEADER`, the fields that must agree with
    each other, every tensor (see the module docstring), and that the
    architecture's layers rebuild and fit together (shapes only, nothing
    allocated).
    """
    path = Path(path)
    if not path.is_file():
        hint = f"; did you mean {path / CHECKPOINT_NAME}?" if path.is_dir() else ""
        raise CheckpointError(f"checkpoint {path} does not exist{hint}")
    st = safetensors_module()
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            header = (f.metadata() or {}).get("volnet")
        tensors = st.load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for torn or foreign files
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({error})") from None
    if header is None:
        raise CheckpointError(f"{path} is a safetensors file but not a volnet checkpoint (no 'volnet' metadata)")
    try:
        metadata = json.loads(header)
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"{path}: the 'volnet' header is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: the 'volnet' header must be a JSON object, got {show(metadata)}")
    version = metadata.get("version", 0)
    if metadata.get("format") != FORMAT or not is_int(version) or version > VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {metadata.get('format')!r} "
                              f"version {version!r}")
    _check_tensors(path, tensors)
    try:
        validate(metadata, HEADER)
        _check_consistency(metadata, tensors)
    except Mismatch as mismatch:
        raise CheckpointError(f"{path}: {mismatch}") from None
    _check_architecture(path, metadata)
    return tensors, metadata


def describe(path, metadata: dict) -> str:
    """Which file of a run ``path`` is, for the commands that read one: ``"best.safetensors: epoch 3 of the run,
    its best by val_accuracy 0.9120"`` or ``"checkpoint.safetensors: the last saved, epoch 5"``."""
    name, best, position = Path(path).name, metadata.get("best"), metadata.get("position")
    if best and best.get("epoch") is not None and position and position["epoch"] == best["epoch"]:
        last = " (also the last saved)" if name == CHECKPOINT_NAME else ""
        return (f"{path}: epoch {best['epoch']}, the run's best by {best['monitor']} "
                f"{best['score']:.4f}{last}")
    if position is not None:
        inside = f", {position['batch']} batches into the next" if position["batch"] else ""
        return f"{path}: the last saved, {position['epoch']} epochs done{inside}"
    return f"{path}: a model without training state"


def require_training_state(metadata: dict, source="checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``metadata`` holds everything a run needs to continue."""
    missing = [name for name in TRAINING_FIELDS if name not in metadata]
    if len(missing) == len(TRAINING_FIELDS):
        raise CheckpointError(f"{source} holds a model but no training state (no optimizer, position, random "
                              "generators...): it can be evaluated or predict with, not resumed")
    if missing:
        raise CheckpointError(f"{source}: field {missing[0]!r} is missing, and a run cannot resume without it")


def load_model(path):
    """``(net, normalizer, tensors, metadata)`` from a checkpoint, weights loaded.

    ``normalizer`` is the data normalisation the net was trained with (or
    None); apply it to images before ``net.forward``. Works for a model-only
    checkpoint (no training state) too.
    """
    tensors, metadata = read(path)
    net = build_network(metadata["architecture"], source=str(path))
    load_network_tensors(net, tensors, source=str(path))
    normalizer = _normalizer(metadata["normalizer"]) if metadata.get("normalizer") else None
    return net, normalizer, tensors, metadata


def pack_model(net, normalizer=None, classes=None, metadata: dict | None = None,
               extra_tensors: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """``(tensors, metadata)`` of a model, what :func:`load_model` reads back.

    ``net``'s weights, its architecture, ``normalizer`` (or None) and the class
    names (``data.classes``), over the fields of ``metadata`` and the tensors
    ``extra_tensors`` of the checkpoint the model was loaded from, kept so that
    a loaded-and-saved run can still be resumed.
    """
    metadata = dict(metadata or {})
    data = {**metadata.get("data", {}), **({"classes": list(classes)} if classes is not None else {})}
    metadata.update(architecture=net.get_config(), normalizer=_config(normalizer), data=data)
    return {**(extra_tensors or {}), **network_tensors(net)}, metadata


def training_tensors(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors of a checkpoint that are not the network's: the optimizer's caches and the epoch's order."""
    return {name: value for name, value in tensors.items() if not name.startswith("layers.")}


# -- a run's state, packed into tensors and a header and back ------------------------


def _config(thing) -> dict | None:
    return thing.get_config() if thing is not None else None


def pack_run(run: RunState) -> tuple[dict[str, np.ndarray], dict]:
    """``(tensors, metadata)`` holding ``run``, ready for :func:`save`; :func:`unpack_run` is the inverse."""
    tensors = network_tensors(run.net)
    optimizer_state = run.optimizer.state_dict()
    for name, arrays in optimizer_state["arrays"].items():
        for j, array in enumerate(arrays):
            tensors[f"optimizer.{name}.{j}"] = array
    pos, settings = run.position, run.settings
    if pos.order is not None:
        tensors["trainer.order"] = pos.order
    metadata = {
        "architecture": run.net.get_config(),
        "optimizer": {"config": run.optimizer.get_config(), "scalars": optimizer_state["scalars"]},
        "schedule": _config(settings.schedule),
        "augment": _config(settings.augment),
        "normalizer": _config(settings.normalizer),
        "train": {"epochs": settings.epochs, "batch_size": settings.batch_size, "loss": settings.loss,
                  "seed": settings.seed, **({"frozen": run.net.frozen} if run.net.frozen else {}),
                  **({"class_weight": [float(w) for w in settings.class_weight]}
                     if settings.class_weight is not None else {})},
        "position": {"epoch": pos.epoch, "batch": pos.batch, "loss_sum": pos.loss_sum, "correct": pos.correct,
                     "seen": pos.seen, "seconds": pos.seconds},
        "rng": {"trainer": generator_state(run.rng),
                "layers": {key: generator_state(rng) for key, rng in layer_generators(run.net).items()}},
        "history": run.history.to_list(),
        **({"best": settings.watch.get_config()} if settings.watch is not None else {}),
        **run.extra,
    }
    return tensors, metadata


def unpack_run(tensors: dict[str, np.ndarray], metadata: dict, source="checkpoint", *,
               images: int | None = None) -> RunState:
    """The run that :func:`pack_run` packed: network and optimizer built and loaded, generators restored.

    ``(tensors, metadata)`` as :func:`read` returns them (checked). ``images``,
    when given, is the size of the training set the run continues on, which an
    interrupted epoch's shuffled order must fit.

    Raises:
        CheckpointError: a model-only checkpoint, or tensors that do not fit
            the network or the optimizer, naming ``source`` and the field or tensor.
    """
    from ..optim import optimizer_from_config

    require_training_state(metadata, source)
    net = build_network(metadata["architecture"], source)
    load_network_tensors(net, tensors, source)
    frozen = metadata["train"].get("frozen", [])
    if any(index > len(net.layers) for index in frozen):
        raise CheckpointError(f"{source}: field 'train.frozen' names layer {max(frozen)} but the network has "
                              f"{len(net.layers)}")
    for index in frozen:
        net.layers[index - 1].trainable = False
    optimizer = optimizer_from_config(net.trainable_params(), metadata["optimizer"]["config"])
    load_optimizer_state(optimizer, tensors, metadata["optimizer"]["scalars"], source)
    restore_layer_generators(net, metadata["rng"]["layers"], source)
    saved = metadata["position"]
    order = tensors.get("trainer.order") if images is None else epoch_order(tensors, images, source)
    position = Position(epoch=saved["epoch"], batch=saved["batch"], order=order, loss_sum=saved["loss_sum"],
                        correct=saved["correct"], seen=saved["seen"], seconds=saved["seconds"])
    train, schedule, augment = metadata["train"], metadata["schedule"], metadata["augment"]
    normalizer = metadata["normalizer"]
    settings = RunSettings(epochs=train["epochs"], batch_size=train["batch_size"], loss=train["loss"],
                           seed=train["seed"], schedule=_schedule(schedule) if schedule else None,
                           augment=_augment(augment) if augment else None,
                           normalizer=_normalizer(normalizer) if normalizer else None,
                           watch=_watch(metadata["best"]) if metadata.get("best") else None,
                           class_weight=train.get("class_weight"))
    extra = {key: value for key, value in metadata.items() if key not in RUN_FIELDS}
    return RunState(net, optimizer, position, restore_generator(metadata["rng"]["trainer"]),
                    History.from_list(metadata["history"]), settings, extra)
