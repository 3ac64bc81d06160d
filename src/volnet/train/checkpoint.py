"""The checkpoint format: one safetensors file holding a run's weights and a JSON description.

This module owns the format, whole: the names of a run folder's files
(:data:`CHECKPOINT_NAME`, :data:`HISTORY_NAMES`), the packing of a run's state
into tensors and a header and back (:func:`pack_run`, :func:`unpack_run`), the
header's schema (:data:`HEADER`), and reading and writing (:func:`read`,
:func:`save`). The trainer and :class:`~volnet.train.model.Model` call it;
neither knows a tensor name or a header field.

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

import csv
import io
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..ops.losses import LOSSES

FORMAT = "volnet-checkpoint"
VERSION = 1
# The files of a run folder (see volnet.train.run_folder): the checkpoint, and the history as JSON and CSV.
CHECKPOINT_NAME = "checkpoint.safetensors"
HISTORY_NAMES = ("history.json", "history.csv")
# What a run needs to continue; a model-only checkpoint (architecture, normalizer, data) has none of it.
TRAINING_FIELDS = ("optimizer", "schedule", "augment", "train", "position", "rng", "history")
# The header fields pack_run writes; any other field (data...) is a fact the caller stored, kept as it is.
RUN_FIELDS = ("format", "version", "architecture", "normalizer", *TRAINING_FIELDS)
# Bit generators whose state is plain JSON integers: what default_rng and Generator.spawn make.
BIT_GENERATORS = ("PCG64", "PCG64DXSM")
# What a constructor raises for a config it cannot use (wrong keys or types, values out of range, too big).
_BAD_CONFIG = (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError,
               MemoryError)
_TENSOR_NAME = re.compile(r"layers\.[1-9][0-9]*\.\w[\w.]*|optimizer\.\w+\.[0-9]+|trainer\.order")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the network it is loaded into."""


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(path: Path, error: OSError) -> OSError:
    """A failed write as one line naming the file meant (not the hidden temporary one) and what is intact."""
    intact = f"the previous {path.name} is intact" if path.exists() else f"nothing was written to {path}"
    wrapped = OSError(f"could not write {path}: {error.strerror or error}; {intact}")
    wrapped.errno = error.errno
    return wrapped


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def network_tensors(net) -> dict[str, np.ndarray]:
    """Parameters and buffers of every layer, named ``layers.<i>.<name>``."""
    tensors = {}
    for index, layer in enumerate(net.layers, start=1):
        for name, p in layer.named_params():
            tensors[f"layers.{index}.{name}"] = p.value
        for name, value in layer.named_buffers().items():
            tensors[f"layers.{index}.{name}"] = value
    return tensors


def save(path, tensors: dict[str, np.ndarray], metadata: dict) -> Path:
    """Save arrays and a JSON-able description atomically into one safetensors file."""
    header = {"format": FORMAT, "version": VERSION, **metadata}
    data = safetensors_module().save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                               metadata={"volnet": json.dumps(header)})
    return atomic_write_bytes(path, data)


# -- the header's schema -------------------------------------------------------
#
# A table of fields rather than a JSON Schema: the checks that are not types
# (a generator state NumPy takes back, an optimizer config that rebuilds) are
# Python calls either way, the messages should use our field names, and an
# install that only evaluates a model need not carry jsonschema and its
# dependencies for a few dozen fields.


@dataclass(frozen=True)
class Check:
    """A value that passes ``test``; ``requirement`` says what in words, for the error message."""

    requirement: str
    test: Callable[[Any], bool]


@dataclass(frozen=True)
class Rebuilds:
    """A config that ``build`` turns into ``what``; the builder's own error says what is wrong."""

    what: str
    build: Callable[[Any], object]


@dataclass(frozen=True)
class Obj:
    """A JSON object with ``required`` and ``optional`` fields (name -> schema); other fields are ignored."""

    required: dict
    optional: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    """A JSON object with free keys (``rng.layers``) whose values all follow ``value``."""

    value: Any


@dataclass(frozen=True)
class Nullable:
    schema: Any


# A tuple of schemas means all of them, in order: the types first, then the rebuild.


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def one_of(*choices: str) -> Check:
    return Check("one of " + ", ".join(map(repr, choices)), lambda v: isinstance(v, str) and v in choices)


COUNT = Check("a non-negative integer", lambda v: _is_int(v) and v >= 0)
POSITIVE = Check("a positive integer", lambda v: _is_int(v) and v > 0)
NUMBER = Check("a finite number", _is_number)
NON_NEGATIVE = Check("a finite number >= 0", lambda v: _is_number(v) and v >= 0)
POSITIVE_NUMBER = Check("a finite number > 0", lambda v: _is_number(v) and v > 0)
FRACTION = Check("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
VAL_SPLIT = Check("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)
TEXT = Check("a string", lambda v: isinstance(v, str))
FLAG = Check("true or false", lambda v: isinstance(v, bool))
VOLUME = Check("a volume [H, W, D] of positive integers",
               lambda v: isinstance(v, list) and len(v) == 3 and all(POSITIVE.test(s) for s in v))
SIZE = Check("a list of 1 to 3 positive integers",
             lambda v: isinstance(v, list) and 1 <= len(v) <= 3 and all(POSITIVE.test(s) for s in v))


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


def _epoch_record(record):
    return EpochRecord(**record)


GENERATOR = (Obj({"bit_generator": one_of(*BIT_GENERATORS), "state": MapOf(COUNT), "has_uint32": COUNT,
                  "uinteger": COUNT}),
             Rebuilds("a NumPy random generator", lambda state: restore_generator(state)))  # defined below
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
        "train": Obj({"epochs": POSITIVE, "batch_size": POSITIVE, "loss": one_of(*LOSSES), "seed": COUNT}),
        "position": Obj({"epoch": COUNT, "batch": COUNT, "loss_sum": NON_NEGATIVE, "correct": COUNT, "seen": COUNT,
                         "seconds": NON_NEGATIVE}),
        "rng": Obj({"trainer": GENERATOR, "layers": MapOf(GENERATOR)}),
        "history": ListOf((Obj({"epoch": POSITIVE, "lr": NON_NEGATIVE, "train_loss": NON_NEGATIVE,
                                "train_accuracy": FRACTION, "val_loss": Nullable(NON_NEGATIVE),
                                "val_accuracy": Nullable(FRACTION), "seconds": NON_NEGATIVE,
                                "images_per_second": NON_NEGATIVE}),
                           Rebuilds("an epoch record", _epoch_record))),
    },
)


class _Mismatch(Exception):
    """Where the header breaks the schema: the dotted ``field`` and what is wrong with it."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"field {field_name!r} {problem}")


def _show(value) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _reason(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"missing {error.args[0]!r}" if error.args else "a missing field"
    return str(error) or type(error).__name__


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _validate(value, schema, name: str = "") -> None:
    """Raise :class:`_Mismatch` at the first field of ``value`` that breaks ``schema``."""
    if isinstance(schema, tuple):
        for part in schema:
            _validate(value, part, name)
    elif isinstance(schema, Nullable):
        if value is not None:
            _validate(value, schema.schema, name)
    elif isinstance(schema, Check):
        if not schema.test(value):
            raise _Mismatch(name, f"must be {schema.requirement}, got {_show(value)}")
    elif isinstance(schema, Rebuilds):
        try:
            schema.build(value)
        except _BAD_CONFIG as error:
            raise _Mismatch(name, f"does not rebuild {schema.what}: {_reason(error)}") from None
    elif isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise _Mismatch(name, f"must be a list, got {_show(value)}")
        for i, item in enumerate(value):
            _validate(item, schema.item, f"{name}[{i}]")
    elif not isinstance(value, dict):  # Obj and MapOf are JSON objects
        raise _Mismatch(name, f"must be an object, got {_show(value)}")
    elif isinstance(schema, MapOf):
        for key, item in value.items():
            _validate(item, schema.value, _join(name, key))
    else:
        for key, sub in {**schema.required, **schema.optional}.items():
            if key in value:
                _validate(value[key], sub, _join(name, key))
            elif key in schema.required:
                raise _Mismatch(_join(name, key), "is missing")


def _check_consistency(metadata: dict, tensors: dict) -> None:
    """What no single field shows: fields that must agree with each other and with the tensors."""
    position, run = metadata.get("position"), metadata.get("train")
    if position is not None:
        batch, seen, order = position["batch"], position["seen"], tensors.get("trainer.order")
        if batch and not seen:
            raise _Mismatch("position.seen", f"is 0 but position.batch says {batch} batches are done")
        if position["correct"] > seen:
            raise _Mismatch("position.correct", f"is {position['correct']} but position.seen is only {seen}")
        if batch and order is None:
            raise _Mismatch("position.batch", f"is {batch} but the tensor 'trainer.order' (the epoch's shuffled "
                                              "order) is missing")
        batches = -(-len(order) // run["batch_size"]) if batch and run is not None else batch
        if batch > batches:
            raise _Mismatch("position.batch", f"is {batch} but an epoch of {len(order)} images has only {batches} "
                                              f"batches of {run['batch_size']} (train.batch_size)")
    normalizer, depth = metadata.get("normalizer"), metadata["architecture"]["input_shape"][-1]
    if normalizer and len(normalizer["mean"]) != depth:
        raise _Mismatch("normalizer.mean", f"has {len(normalizer['mean'])} channels but the network's input "
                                           f"has depth {depth} (architecture.input_shape)")


def _check_architecture(path, metadata: dict) -> None:
    """The layers fit together and with the data's classes: shapes only, nothing allocated."""
    from ..analysis import analyze_layers

    config = metadata["architecture"]
    try:
        output = analyze_layers([_layer(c) for c in config["layers"]], config["input_shape"]).output_shape
    except _BAD_CONFIG as error:
        raise CheckpointError(f"{path}: field 'architecture' does not fit together: {_reason(error)}") from None
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
        raise CheckpointError(f"{path}: the 'volnet' header must be a JSON object, got {_show(metadata)}")
    version = metadata.get("version", 0)
    if metadata.get("format") != FORMAT or not _is_int(version) or version > VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {metadata.get('format')!r} "
                              f"version {version!r}")
    _check_tensors(path, tensors)
    try:
        _validate(metadata, HEADER)
        _check_consistency(metadata, tensors)
    except _Mismatch as mismatch:
        raise CheckpointError(f"{path}: {mismatch}") from None
    _check_architecture(path, metadata)
    return tensors, metadata


def require_training_state(metadata: dict, source="checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``metadata`` holds everything a run needs to continue."""
    missing = [name for name in TRAINING_FIELDS if name not in metadata]
    if len(missing) == len(TRAINING_FIELDS):
        raise CheckpointError(f"{source} holds a model but no training state (no optimizer, position, random "
                              "generators...): it can be evaluated or predict with, not resumed")
    if missing:
        raise CheckpointError(f"{source}: field {missing[0]!r} is missing, and a run cannot resume without it")


def build_network(config: dict, source="checkpoint"):
    """The :class:`~volnet.Sequential` an ``architecture`` field describes, refused before allocation if too big."""
    from ..net import Sequential
    from ..resources import ResourceError

    try:
        return Sequential.from_config(config)
    except ResourceError as error:
        raise CheckpointError(f"{source}: field 'architecture' describes a network this machine cannot hold: "
                              f"{error}") from None
    except _BAD_CONFIG as error:
        raise CheckpointError(f"{source}: field 'architecture' does not build a network: {_reason(error)}") from None


def _check_fits(source, name: str, saved: np.ndarray, current: np.ndarray, holder: str) -> None:
    if saved.dtype.kind != "f" or not np.can_cast(saved.dtype, current.dtype, "safe"):
        raise CheckpointError(f"{source}: tensor {name!r} is {saved.dtype} but {holder} holds {current.dtype}; "
                              "only floats that convert exactly are loaded (architecture.dtype)")


def load_network_tensors(net, tensors: dict[str, np.ndarray], source="checkpoint") -> None:
    """Copy saved parameters and buffers into ``net`` in place.

    Raises :class:`CheckpointError` naming the first tensor that is missing,
    whose shape differs (with both shapes), or whose dtype is not a float
    that converts exactly to the network's.
    """
    expected = network_tensors(net)
    for name, current in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{source} has no tensor {name!r} (layer {name.split('.')[1]} of the network); "
                                  "was it saved from a different architecture?")
        saved = tensors[name]
        index = int(name.split(".")[1])
        if saved.shape != current.shape:
            raise CheckpointError(
                f"{source} tensor {name!r} has shape {saved.shape} but {net.layers[index - 1].label} "
                f"expects {current.shape}: the architectures differ"
            )
        _check_fits(source, name, saved, current, net.layers[index - 1].label)
    extra = sorted(k for k in tensors if k.startswith("layers.") and k not in expected)
    if extra:
        raise CheckpointError(f"{source} has tensor {extra[0]!r} that this network has no place for; "
                              "was it saved from a different architecture?")
    for name, current in expected.items():
        current[...] = tensors[name]


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


def load_optimizer_state(optimizer, tensors: dict[str, np.ndarray], scalars: dict, source="checkpoint") -> None:
    """Restore ``optimizer``'s caches from the tensors ``optimizer.<state>.<j>`` and its ``scalars``.

    Raises :class:`CheckpointError` naming the first tensor that is missing,
    has no place in this optimizer, or does not fit its parameter.
    """
    n, names = len(optimizer.params), list(optimizer.state_names)
    keeps = f"{type(optimizer).__name__} keeps {names or 'no state'} for each of its {n} parameters"
    expected = {f"optimizer.{name}.{j}": p for name in names for j, p in enumerate(optimizer.params)}
    extra = sorted(k for k in tensors if k.startswith("optimizer.") and k not in expected)
    if extra:
        raise CheckpointError(f"{source}: tensor {extra[0]!r} has no place in the optimizer ({keeps}); "
                              "field 'optimizer.config' and the tensors disagree")
    for key, p in expected.items():
        if key not in tensors:
            raise CheckpointError(f"{source} has no tensor {key!r} ({keeps})")
        j = int(key.rsplit(".", 1)[1])
        if tensors[key].shape != p.value.shape:
            raise CheckpointError(f"{source}: tensor {key!r} has shape {tensors[key].shape} but parameter {j} "
                                  f"({p.name}) has shape {p.value.shape}")
        _check_fits(source, key, tensors[key], p.value, f"parameter {j} ({p.name})")
    try:
        optimizer.load_state_dict({"arrays": {name: [tensors[f"optimizer.{name}.{j}"] for j in range(n)]
                                              for name in names}, "scalars": scalars})
    except _BAD_CONFIG as error:
        raise CheckpointError(f"{source}: field 'optimizer.scalars' does not fit the optimizer: "
                              f"{_reason(error)}") from None


def epoch_order(tensors: dict[str, np.ndarray], images: int, source="checkpoint") -> np.ndarray | None:
    """The interrupted epoch's shuffled order (None between epochs), checked against the training set's size."""
    order = tensors.get("trainer.order")
    if order is not None and len(order) != images:
        raise CheckpointError(f"{source}: tensor 'trainer.order' shuffles {len(order)} images but the training "
                              f"set has {images}; resume with the data the run was started on")
    return order


def layer_generators(net) -> dict[str, np.random.Generator]:
    """Random generators held by layers (Dropout), keyed ``"<i>"`` or ``"<i>.<path>"`` for nested layers."""
    return {f"{index}.{path}" if path else str(index): layer.rng
            for index, top in enumerate(net.layers, start=1) for path, layer in top.named_layers()
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def set_layer_generator(net, key: str, rng: np.random.Generator) -> None:
    index, _, path = key.partition(".")
    layer = dict(net.layers[int(index) - 1].named_layers())[path]
    layer.rng = rng


def restore_layer_generators(net, states: dict, source="checkpoint") -> None:
    """Give every random layer of ``net`` its saved generator (field ``rng.layers``)."""
    keys = sorted(layer_generators(net))
    if sorted(states) != keys:
        raise CheckpointError(f"{source}: field 'rng.layers' holds generators for layers {sorted(states)} but "
                              f"the network's random layers are {keys}")
    for key, state in states.items():
        try:
            rng = restore_generator(state)
        except _BAD_CONFIG as error:
            raise CheckpointError(f"{source}: field 'rng.layers.{key}' does not rebuild a NumPy random generator: "
                                  f"{_reason(error)}") from None
        set_layer_generator(net, key, rng)


def generator_state(rng: np.random.Generator) -> dict:
    """JSON-able state of a NumPy generator."""
    return rng.bit_generator.state


def restore_generator(state: dict) -> np.random.Generator:
    """The generator :func:`generator_state` saved; a ValueError for a state NumPy would not give back."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise ValueError(f"the bit generator must be one of {', '.join(BIT_GENERATORS)}, got {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    if bit_generator.state != state:  # NumPy truncates a float, wraps an odd increment...
        raise ValueError("NumPy does not take this state back unchanged (a number that is not an unsigned "
                         "integer of the right size?)")
    return np.random.Generator(bit_generator)


# -- a run's state, packed into tensors and a header and back ------------------------


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a run: an item of the header's ``history`` and a row of the history files."""

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    images_per_second: float


@dataclass
class History:
    """Per-epoch records; saved as JSON or CSV by file suffix (the run folder's :data:`HISTORY_NAMES`)."""

    records: list[EpochRecord] = field(default_factory=list)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]

    def to_list(self) -> list[dict]:
        """The records as the header's ``history`` field holds them."""
        return [asdict(r) for r in self.records]

    def to_json(self) -> str:
        return json.dumps(self.to_list(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(EpochRecord.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(self.to_list())
        return out.getvalue()

    def save(self, path) -> Path:
        path = Path(path)
        if path.suffix not in (".json", ".csv"):
            raise ValueError(f"history file must end in .json or .csv, got {path.name}")
        text = self.to_json() if path.suffix == ".json" else self.to_csv()
        return atomic_write_bytes(path, text.encode())

    @classmethod
    def from_list(cls, items) -> History:
        return cls([EpochRecord(**item) for item in items])


@dataclass
class Position:
    """Where a run stands: epochs completed, and inside the current epoch (the header's ``position``).

    ``order`` is the current epoch's shuffled order (the tensor ``trainer.order``),
    None between epochs.
    """

    epoch: int = 0
    batch: int = 0
    order: np.ndarray | None = None
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


@dataclass
class RunSettings:
    """How a run trains: the header's ``train`` field, and its schedule, augmentation and normalisation.

    ``schedule``, ``augment`` and ``normalizer`` are objects with ``get_config()``, or None.
    """

    epochs: int
    batch_size: int
    loss: str
    seed: int
    schedule: Any = None
    augment: Any = None
    normalizer: Any = None


@dataclass
class RunState:
    """Everything a checkpoint holds of a run: what :func:`pack_run` writes and :func:`unpack_run` gives back.

    Attributes:
        net: the :class:`~volnet.Sequential`; its random layers (Dropout) carry their generators.
        optimizer: built on ``net.params()``, its caches included.
        position: where the run stands (:class:`Position`).
        rng: the trainer's generator (shuffling and augmentation).
        history: the epochs done (:class:`History`).
        settings: how the run trains (:class:`RunSettings`).
        extra: other JSON-able header fields, stored as given (``data``...).
    """

    net: Any
    optimizer: Any
    position: Position
    rng: np.random.Generator
    history: History
    settings: RunSettings
    extra: dict = field(default_factory=dict)


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
                  "seed": settings.seed},
        "position": {"epoch": pos.epoch, "batch": pos.batch, "loss_sum": pos.loss_sum, "correct": pos.correct,
                     "seen": pos.seen, "seconds": pos.seconds},
        "rng": {"trainer": generator_state(run.rng),
                "layers": {key: generator_state(rng) for key, rng in layer_generators(run.net).items()}},
        "history": run.history.to_list(),
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
    optimizer = optimizer_from_config(net.params(), metadata["optimizer"]["config"])
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
                           normalizer=_normalizer(normalizer) if normalizer else None)
    extra = {key: value for key, value in metadata.items() if key not in RUN_FIELDS}
    return RunState(net, optimizer, position, restore_generator(metadata["rng"]["trainer"]),
                    History.from_list(metadata["history"]), settings, extra)
