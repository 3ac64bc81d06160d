"""Hostile checkpoints: every edit to the header or the tensors gives one CheckpointError naming file and field.

A small real run is checkpointed mid-epoch (so the file holds every field:
optimizer state, the epoch's order, a history, Dropout's generator); each
case rewrites its header or tensors and checks that the first consumer to
notice (``read``, ``load_model`` or ``Trainer.from_checkpoint``) raises
:class:`CheckpointError` with the file's path and the field in the message,
and that every later consumer does too.
"""

import copy
import json

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volnet import Sequential
from volnet.cli import main
from volnet.data import Augment, HorizontalFlip, Normalizer, RandomCrop
from volnet.layers import FC, BatchNorm, Conv2D, Dropout, MaxPool, ReLU
from volnet.optim import CosineAnnealing, make_optimizer
from volnet.train import Callback, CheckpointError, Trainer
from volnet.train import checkpoint as ckpt
from toy import CLASSES, toy_data



class StopAt(Callback):
    def __init__(self, epoch, batch):
        self.trainer, self.epoch, self.batch = None, epoch, batch

    def on_batch(self, progress):
        if (progress.epoch, progress.batch) == (self.epoch, self.batch):
            self.trainer.request_stop()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``(tensors, metadata)`` of a run stopped at epoch 2, batch 2: every field of the format is there."""
    out = tmp_path_factory.mktemp("run")
    data = toy_data(48)
    net = Sequential([Conv2D(4, 3, P=1), BatchNorm(), ReLU(), MaxPool(2, 2), Dropout(0.3), FC(3)],
                     input_shape=(8, 8, 1), seed=1)
    stop = StopAt(2, 2)
    trainer = Trainer(net, make_optimizer("momentum", net.params(), lr=0.05, momentum=0.9), data, epochs=3,
                      batch_size=16, schedule=CosineAnnealing(0.05, T=3),
                      augment=Augment([RandomCrop(pad=1), HorizontalFlip()]), normalizer=Normalizer.fit(data.images),
                      seed=7, out_dir=out, callbacks=[stop],
                      extra_metadata={"data": {"name": "mnist5k", "root": None, "size": None, "grayscale": False,
                                               "val_split": 0.0, "classes": list(CLASSES)}})
    stop.trainer = trainer
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    tensors, metadata = ckpt.read(out / "checkpoint.safetensors")
    assert "trainer.order" in tensors and metadata["position"]["batch"] == 2 and metadata["history"]
    assert metadata["rng"]["layers"]
    return tensors, metadata


def write(path, tensors, metadata):
    safetensors.numpy.save_file(tensors, str(path), metadata={"volnet": json.dumps(metadata)})
    return path


def edited(saved, tmp_path, edit):
    tensors, metadata = {k: v.copy() for k, v in saved[0].items()}, copy.deepcopy(saved[1])
    metadata = edit(tensors, metadata) or metadata
    return write(tmp_path / "checkpoint.safetensors", tensors, metadata)


def _parent(metadata, path):
    """The container holding the dotted ``path`` of the header, and the last key (a number in a list)."""
    *parents, last = path.split(".")
    target = metadata
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    return target, int(last) if isinstance(target, list) else last


def setting(path, value):
    """An edit that sets the dotted ``path`` of the header (``history.0.epoch``) to ``value``."""
    def edit(tensors, metadata):
        target, key = _parent(metadata, path)
        target[key] = value
    return edit


def removing(path):
    def edit(tensors, metadata):
        target, key = _parent(metadata, path)
        del target[key]
    return edit


def removing_tensor(name):
    def edit(tensors, metadata):
        del tensors[name]
    return edit


def tensor(name, change):
    def edit(tensors, metadata):
        tensors[name] = change(tensors[name])
    return edit


def with_nan(array):
    array = array.copy()
    array.flat[3] = np.nan
    return array


# (what the edit does, the edit, the first consumer that must refuse it, what the message names)
CASES = [
    ("header is a list", lambda t, m: [m], "read", r"header must be a JSON object, got \[\{"),
    ("list instead of object", setting("position", [1, 2]), "read",
     r"field 'position' must be an object, got \[1, 2\]"),
    ("missing architecture", removing("architecture"), "read", r"field 'architecture' is missing"),
    ("unknown layer argument", setting("architecture.layers.0.foo", 1), "read",
     r"field 'architecture.layers\[0\]' does not rebuild a layer: .*'foo'"),
    ("layer of wrong type", setting("architecture.layers.0.K", "many"), "read",
     r"field 'architecture.layers\[0\]' does not rebuild a layer"),
    ("unknown layer type", setting("architecture.layers.2.type", "Softplus"), "read",
     r"field 'architecture.layers\[2\]' does not rebuild a layer: unknown layer type 'Softplus'"),
    ("layers that do not fit", setting("architecture.layers.0.F", 50), "read",
     r"field 'architecture' does not fit together: layer 1 \(Conv2D\)"),
    ("absurd size", setting("architecture.layers.0.K", 10**12), "load",
     r"field 'architecture' describes a network this machine cannot hold"),
    ("absurd input", setting("architecture.input_shape", [10**7, 10**7, 1]), "load",
     r"field 'architecture' describes a network this machine cannot hold"),
    ("integer dtype", setting("architecture.dtype", "int8"), "read",
     r"field 'architecture.dtype' must be one of 'float16', 'float32', 'float64', got \"int8\""),
    ("float index", setting("position.epoch", 1.5), "read",
     r"field 'position.epoch' must be a non-negative integer, got 1.5"),
    ("float batch", setting("position.batch", 2.0), "read", r"field 'position.batch' must be a non-negative integer"),
    ("bool as a count", setting("train.epochs", True), "read", r"field 'train.epochs' must be a positive integer"),
    ("zero batch size", setting("train.batch_size", 0), "read",
     r"field 'train.batch_size' must be a positive integer, got 0"),
    ("unknown loss", setting("train.loss", "mse"), "read", r"field 'train.loss' must be one of 'softmax', 'svm'"),
    ("batches done, none seen", setting("position.seen", 0), "read", r"field 'position.seen' is 0"),
    ("more correct than seen", setting("position.correct", 10**6), "read", r"field 'position.correct'"),
    ("batch beyond the epoch", setting("position.batch", 9), "read",
     r"field 'position.batch' is 9 but an epoch of 48 images has only 3 batches"),
    ("missing order", removing_tensor("trainer.order"), "read",
     r"field 'position.batch' is 2 but the tensor 'trainer.order'"),
    ("bad rng state", setting("rng.trainer.state.state", "abc"), "read",
     r"field 'rng.trainer.state.state' must be a non-negative integer, got \"abc\""),
    ("rng state of floats", setting("rng.layers.5.state.inc", 1.5), "read",
     r"field 'rng.layers.5.state.inc' must be a non-negative integer, got 1.5"),
    ("rng state out of range", setting("rng.trainer.state.inc", 2**200), "read",
     r"field 'rng.trainer' does not rebuild a NumPy random generator: "),
    ("rng calls a function", setting("rng.trainer.bit_generator", "seed"), "read",
     r"field 'rng.trainer.bit_generator' must be one of 'PCG64', 'PCG64DXSM', got \"seed\""),
    ("rng for a layer that is not random", lambda t, m: m["rng"]["layers"].update({"2": m["rng"]["trainer"]}),
     "resume", r"field 'rng.layers' holds generators for layers \['2', '5'\]"),
    ("unknown optimizer argument", setting("optimizer.config.foo", 1), "read",
     r"field 'optimizer.config' does not rebuild an optimizer: .*'foo'"),
    ("unknown optimizer", setting("optimizer.config.name", "lion"), "read",
     r"field 'optimizer.config' does not rebuild an optimizer: unknown optimizer 'lion'"),
    ("optimizer scalar as text", setting("optimizer.scalars.lr", "fast"), "read",
     r"field 'optimizer.scalars.lr' must be a finite number >= 0, got \"fast\""),
    ("another optimizer's arguments", setting("optimizer.config.name", "adam"), "read",
     r"field 'optimizer.config' does not rebuild an optimizer: .*'momentum'"),
    ("optimizer state missing", removing_tensor("optimizer.velocity.3"), "resume",
     r"has no tensor 'optimizer.velocity.3' \(SGD keeps \['velocity'\] for each of its 6 parameters\)"),
    ("optimizer state with no place", lambda t, m: t.update({"optimizer.m.0": t["optimizer.velocity.0"]}), "resume",
     r"tensor 'optimizer.m.0' has no place in the optimizer"),
    ("bad schedule", setting("schedule.T", 0), "read",
     r"field 'schedule' does not rebuild a learning-rate schedule: T must be an integer >= 1"),
    ("unknown transform", setting("augment.transforms.0.name", "Rotate"), "read",
     r"field 'augment' does not rebuild an augmentation: unknown transform 'Rotate'"),
    ("zero std", setting("normalizer.std", [0.0]), "read", r"field 'normalizer.std\[0\]' must be a finite number > 0"),
    ("normalizer of other depth", setting("normalizer", {"mean": [0, 0, 0], "std": [1, 1, 1]}), "read",
     r"field 'normalizer.mean' has 3 channels but the network's input has depth 1"),
    ("classes that do not match", setting("data.classes", ["a", "b"]), "read",
     r"field 'data.classes' names 2 classes but the network \(architecture\) has 3 outputs"),
    ("history record with an extra field", setting("history.0.note", "hi"), "read",
     r"field 'history\[0\]' does not rebuild an epoch record: .*'note'"),
    ("history accuracy above 1", setting("history.0.train_accuracy", 3), "read",
     r"field 'history\[0\].train_accuracy' must be a number in \[0, 1\]"),
    ("version as text", setting("version", "1"), "read", r"unsupported checkpoint format"),
    ("int8 tensor", tensor("layers.1.weight", lambda a: a.astype(np.int8)), "read",
     r"tensor 'layers.1.weight' must hold floating-point numbers, got int8"),
    ("bool tensor", tensor("layers.2.gamma", lambda a: a > 0), "read",
     r"tensor 'layers.2.gamma' must hold floating-point numbers, got bool"),
    ("NaN parameter", tensor("layers.1.weight", with_nan), "read",
     r"tensor 'layers.1.weight' holds NaN or Inf \(1 of 36 values\)"),
    ("Inf optimizer state", tensor("optimizer.velocity.0", lambda a: a * np.inf), "read",
     r"tensor 'optimizer.velocity.0' holds NaN or Inf"),
    ("order of floats", tensor("trainer.order", lambda a: a.astype(np.float32)), "read",
     r"tensor 'trainer.order' must be a 1-D array of integers, got float32"),
    ("order not a permutation", tensor("trainer.order", lambda a: np.zeros_like(a)), "read",
     r"tensor 'trainer.order' must be a permutation of 0..47"),
    ("unknown tensor", lambda t, m: t.update({"extra": np.zeros(3, np.float32)}), "read",
     r"tensor 'extra' is none the format has"),
    ("wrong tensor shape", tensor("layers.1.weight", lambda a: a[..., :2].copy()), "load",
     r"tensor 'layers.1.weight' has shape \(3, 3, 1, 2\) but layer 1 \(Conv2D\) expects \(3, 3, 1, 4\)"),
    ("float64 into a float32 net", tensor("layers.1.weight", lambda a: a.astype(np.float64)), "load",
     r"tensor 'layers.1.weight' is float64 but layer 1 \(Conv2D\) holds float32"),
    ("optimizer state of wrong shape", tensor("optimizer.velocity.0", lambda a: a[..., :2].copy()), "resume",
     r"tensor 'optimizer.velocity.0' has shape \(3, 3, 1, 2\) but parameter 0 \(weight\) has shape \(3, 3, 1, 4\)"),
    ("missing training field", removing("position"), "resume", r"field 'position' is missing"),
]
STAGES = ("read", "load", "resume")


def consumers(path):
    return {"read": lambda: ckpt.read(path), "load": lambda: ckpt.load_model(path),
            "resume": lambda: Trainer.from_checkpoint(path, toy_data(48), out_dir=path.parent / "resumed")}


@pytest.mark.parametrize("edit, stage, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_hostile_edit_is_refused_naming_file_and_field(saved, tmp_path, edit, stage, message):
    path = edited(saved, tmp_path, edit)
    run = consumers(path)
    for earlier in STAGES[:STAGES.index(stage)]:
        run[earlier]()  # the consumers before the one that must notice accept the file
    for later in STAGES[STAGES.index(stage):]:
        with pytest.raises(CheckpointError, match=message) as error:
            run[later]()
        text = str(error.value)
        assert text.startswith(str(path)) and "\n" not in text


def test_the_unedited_checkpoint_resumes(saved, tmp_path):
    path = edited(saved, tmp_path, lambda t, m: None)
    trainer = Trainer.from_checkpoint(path, toy_data(48), out_dir=tmp_path / "resumed")
    assert (trainer.position.epoch, trainer.position.batch) == (1, 2)


def test_float16_weights_load_into_a_float32_net(saved, tmp_path):
    path = edited(saved, tmp_path, tensor("layers.1.weight", lambda a: a.astype(np.float16)))
    net, *_ = ckpt.load_model(path)
    np.testing.assert_array_equal(net.layers[0].params()[0].value, saved[0]["layers.1.weight"].astype(np.float16))


def test_resuming_with_other_data_names_the_order(saved, tmp_path):
    path = edited(saved, tmp_path, lambda t, m: None)
    with pytest.raises(CheckpointError, match=r"tensor 'trainer.order' shuffles 48 images but the training set "
                                              r"has 40"):
        Trainer.from_checkpoint(path, toy_data(40), out_dir=tmp_path / "resumed")


def model_only(saved, tmp_path):
    tensors, metadata = saved
    header = {k: metadata[k] for k in ("format", "version", "architecture", "normalizer", "data")}
    return write(tmp_path / "model.safetensors", {k: v for k, v in tensors.items() if k.startswith("layers.")},
                 header)


def test_model_only_checkpoint_loads_but_does_not_resume(saved, tmp_path):
    path = model_only(saved, tmp_path)
    net, normalizer, _, metadata = ckpt.load_model(path)
    assert net.output_shape == (3,) and normalizer is not None and metadata["data"]["classes"] == list(CLASSES)
    with pytest.raises(CheckpointError, match=r"model.safetensors holds a model but no training state"):
        Trainer.from_checkpoint(path, toy_data(48), out_dir=tmp_path / "resumed")


def test_cli_eval_of_an_edited_file_prints_one_line(saved, tmp_path, capsys):
    path = edited(saved, tmp_path, setting("position.epoch", 1.5))
    assert main(["eval", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err and "field 'position.epoch' must be a non-negative integer, got 1.5" in err


def _leaves(value, prefix=()):
    """Every (path, value) below a JSON value, containers included."""
    yield prefix, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _leaves(child, (*prefix, key))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=5)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), value=JSON)
def test_any_edit_of_one_field_resumes_or_says_which_field(saved, tmp_path, data, value):
    """Replace any one field of the header with any JSON value: a clean CheckpointError or a working resume."""
    metadata = copy.deepcopy(saved[1])
    paths = [p for p, _ in _leaves(metadata) if p]
    where = data.draw(st.sampled_from(paths))
    target = metadata
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    path = write(tmp_path / "checkpoint.safetensors", saved[0], metadata)
    try:
        Trainer.from_checkpoint(path, toy_data(48), out_dir=tmp_path / "resumed")
    except CheckpointError as error:
        assert str(error).startswith(str(path)) and "\n" not in str(error)


@pytest.mark.slow
@pytest.mark.parametrize("field, value", [("S", 38217527819970), ("S", 2**70), ("P", 2**70)])
def test_cli_eval_of_a_huge_pooling_number_returns_one_line(saved, tmp_path, field, value):
    """The numbers that hung the fuzz above (`shapes` searched every stride up to the header's): one line, at once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    def huge(tensors, metadata):
        pool = next(layer for layer in metadata["architecture"]["layers"] if layer["type"] == "MaxPool")
        pool[field] = value

    path = edited(saved, tmp_path, huge)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    result = subprocess.run([sys.executable, "-m", "volnet", "eval", str(path)], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr


def test_an_augmentation_that_does_not_fit_the_data_names_its_field(saved, tmp_path):
    """Found by the fuzz above: a crop pad as large as the images resumed into a bare ValueError."""
    metadata = copy.deepcopy(saved[1])
    metadata["augment"] = {"transforms": [{"name": "RandomCrop", "pad": 8}]}
    path = write(tmp_path / "checkpoint.safetensors", saved[0], metadata)
    with pytest.raises(CheckpointError, match=r"field 'augment' does not fit the training data: --crop-pad 8"):
        Trainer.from_checkpoint(path, toy_data(48), out_dir=tmp_path / "resumed")
