"""Trainer: epochs of mini-batches, validation, history, checkpoints, exact resume.

One training step is the notes' loop: forward a batch, score it with the
loss, backpropagate, update every parameter. Around it the trainer keeps
what a long CPU run needs:

* per-epoch train/validation loss and accuracy, images/s (:class:`History`);
* progress events for a progress bar (:class:`Callback`; the trainer itself
  never prints);
* a checkpoint after every epoch and on Ctrl-C, written atomically;
* a stop with a clear message when the loss turns NaN/Inf;
* exact resume: all randomness (shuffling, augmentation, dropout) comes from
  generators whose states are saved, and an interrupted epoch resumes at the
  batch where it stopped, so interrupted + resumed == uninterrupted.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..ops.losses import LOSSES
from . import checkpoint as ckpt
from .loop import check_labelled, evaluate

CHECKPOINT_NAME = "checkpoint.safetensors"
_RUN_KEYS = {"format", "version", "architecture", "optimizer", "schedule", "augment", "normalizer", "train",
             "position", "rng", "history"}


class TrainingDiverged(ValueError):
    """The loss became NaN or Inf."""


@dataclass(frozen=True)
class EpochRecord:
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
    """Per-epoch records; saved as JSON or CSV by file suffix."""

    records: list[EpochRecord] = field(default_factory=list)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.records], indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(EpochRecord.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in self.records)
        return out.getvalue()

    def save(self, path) -> Path:
        path = Path(path)
        if path.suffix not in (".json", ".csv"):
            raise ValueError(f"history file must end in .json or .csv, got {path.name}")
        text = self.to_json() if path.suffix == ".json" else self.to_csv()
        return ckpt.atomic_write_bytes(path, text.encode())

    @classmethod
    def from_list(cls, items) -> History:
        return cls([EpochRecord(**item) for item in items])


@dataclass(frozen=True)
class BatchProgress:
    epoch: int
    epochs: int
    batch: int  # batches done in this epoch
    batches: int
    loss: float  # running mean over the epoch so far
    accuracy: float
    images_per_second: float


class Callback:
    """Progress hooks; override what you need."""

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None: ...

    def on_batch(self, progress: BatchProgress) -> None: ...

    def on_epoch(self, record: EpochRecord) -> None: ...


@dataclass
class _Position:
    """Where a run stands: epochs completed, and inside the current epoch."""

    epoch: int = 0
    batch: int = 0
    order: np.ndarray | None = None
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


class Trainer:
    """Train ``net`` with ``optimizer`` on a labelled data set.

    Args:
        net: a :class:`~volnet.Sequential`.
        optimizer: built on ``net.params()``.
        train: a data set with ``images`` (N, H, W, D) and ``labels`` (N,).
        val: optional data set evaluated after every epoch.
        epochs: total epochs of the run. batch_size: images per step.
        loss: "softmax" (cross-entropy) or "svm" (hinge).
        schedule: optional object with ``lr_at(epoch_index)``; sets the
            learning rate at the start of every epoch.
        augment: optional ``augment(images, rng) -> images`` applied to each batch.
        normalizer: optional ``normalizer(images) -> images`` applied after augmentation
            (and to validation images).
        seed: seeds shuffling and augmentation.
        out_dir: folder for ``checkpoint.safetensors`` and ``history.json``/``.csv``;
            None saves nothing.
        extra_metadata: JSON-able facts stored in every checkpoint (data set name...).
    """

    def __init__(self, net, optimizer, train, *, val=None, epochs: int = 10, batch_size: int = 64,
                 loss: str = "softmax", schedule=None, augment=None, normalizer=None, seed: int = 0,
                 out_dir=None, callbacks=(), extra_metadata=None):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
        self.net, self.optimizer, self.train, self.val = net, optimizer, train, val
        check_labelled(net, train.images, train.labels, "training")
        if val is not None:
            check_labelled(net, val.images, val.labels, "validation")
        self.epochs, self.batch_size, self.loss = epochs, batch_size, loss
        self.schedule, self.augment, self.normalizer = schedule, augment, normalizer
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks)
        self.extra_metadata = dict(extra_metadata or {})
        self.history = History()
        self.position = _Position()
        self._stop_requested = False

    # -- the loop --------------------------------------------------------
    def run(self) -> History:
        """Train until ``epochs`` are done; returns the history.

        Ctrl-C (or :meth:`request_stop`) finishes the current step, saves a
        checkpoint and raises KeyboardInterrupt.
        """
        with self._deferred_interrupt():
            while self.position.epoch < self.epochs:
                self._run_epoch(self.position.epoch + 1)
        return self.history

    def request_stop(self) -> None:
        """Stop after the current step (what Ctrl-C does)."""
        self._stop_requested = True

    def _run_epoch(self, epoch: int) -> None:
        pos, n = self.position, len(self.train.labels)
        if pos.order is None:
            pos.order = self.rng.permutation(n)
        if self.schedule is not None:
            self.optimizer.lr = float(self.schedule.lr_at(epoch - 1))
        batches = -(-n // self.batch_size)
        for callback in self.callbacks:
            callback.on_epoch_start(epoch, self.epochs, batches)
        loss_fn = LOSSES[self.loss]
        while pos.batch < batches:
            started = time.perf_counter()
            index = pos.order[pos.batch * self.batch_size: (pos.batch + 1) * self.batch_size]
            images, labels = self.train.images[index], self.train.labels[index]
            if self.augment is not None:
                images = self.augment(images, self.rng)
            if self.normalizer is not None:
                images = self.normalizer(images)
            scores = self.net.forward(images, train=True)
            if not np.all(np.isfinite(scores)):
                self._diverged(epoch, pos.batch + 1, "the class scores")
            value, dscores = loss_fn(scores, labels)
            if not np.isfinite(value):
                self._diverged(epoch, pos.batch + 1, "the loss")
            self.net.backward(dscores, input_grad=False)
            self.optimizer.step()
            pos.batch += 1
            pos.loss_sum += value * len(index)
            pos.correct += int((scores.argmax(axis=1) == labels).sum())
            pos.seen += len(index)
            pos.seconds += time.perf_counter() - started
            progress = BatchProgress(epoch, self.epochs, pos.batch, batches, pos.loss_sum / pos.seen,
                                     pos.correct / pos.seen, pos.seen / max(pos.seconds, 1e-9))
            for callback in self.callbacks:
                callback.on_batch(progress)
            if self._stop_requested:
                self.save()
                raise KeyboardInterrupt(f"stopped at epoch {epoch}, batch {pos.batch}/{batches}")
        val_loss, val_accuracy = self.evaluate(self.val) if self.val is not None else (None, None)
        record = EpochRecord(epoch, self.optimizer.lr, pos.loss_sum / pos.seen, pos.correct / pos.seen,
                             val_loss, val_accuracy, pos.seconds, pos.seen / max(pos.seconds, 1e-9))
        self.history.records.append(record)
        self.position = _Position(epoch=epoch)
        self.save()
        for callback in self.callbacks:
            callback.on_epoch(record)

    def _diverged(self, epoch, batch, what):
        self.position = _Position(epoch=self.position.epoch)  # the last checkpoint stays the last good state
        raise TrainingDiverged(
            f"training diverged: {what} became NaN/Inf at epoch {epoch}, batch {batch} (learning rate "
            f"{self.optimizer.lr:g}); lower the learning rate or check the data for NaN/Inf"
            + (f"; the last good checkpoint is {self.checkpoint_path}" if self.checkpoint_path else "")
        )

    def evaluate(self, data) -> tuple[float, float]:
        """``(mean loss, accuracy)`` on a data set, in inference mode, normalised like training."""
        return evaluate(self.net, data.images, data.labels, loss=self.loss, transform=self.normalizer)

    @contextmanager
    def _deferred_interrupt(self):
        """Turn Ctrl-C into a stop request honoured between steps, so no update is torn."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self._stop_requested:  # a second Ctrl-C: stop right now
                raise KeyboardInterrupt
            self.request_stop()

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            self._stop_requested = False

    # -- checkpoints -----------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything needed to continue this run: ``(tensors, metadata)``."""
        tensors = ckpt.network_tensors(self.net)
        optimizer_state = self.optimizer.state_dict()
        for name, arrays in optimizer_state["arrays"].items():
            for j, array in enumerate(arrays):
                tensors[f"optimizer.{name}.{j}"] = array
        pos = self.position
        if pos.order is not None:
            tensors["trainer.order"] = pos.order
        metadata = {
            "architecture": self.net.get_config(),
            "optimizer": {"config": self.optimizer.get_config(), "scalars": optimizer_state["scalars"]},
            "schedule": self.schedule.get_config() if self.schedule is not None else None,
            "augment": self.augment.get_config() if self.augment is not None else None,
            "normalizer": self.normalizer.get_config() if self.normalizer is not None else None,
            "train": {"epochs": self.epochs, "batch_size": self.batch_size, "loss": self.loss, "seed": self.seed},
            "position": {"epoch": pos.epoch, "batch": pos.batch, "loss_sum": pos.loss_sum,
                         "correct": pos.correct, "seen": pos.seen, "seconds": pos.seconds},
            "rng": {"trainer": ckpt.generator_state(self.rng),
                    "layers": {key: ckpt.generator_state(rng) for key, rng in ckpt.layer_generators(self.net).items()}},
            "history": json.loads(self.history.to_json()),
            **self.extra_metadata,
        }
        return tensors, metadata

    def save(self, path=None) -> Path | None:
        """Write the checkpoint (and the history files) atomically; returns the checkpoint path."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            return None
        tensors, metadata = self.state()
        ckpt.save(path, tensors, metadata)
        self.history.save(path.parent / "history.json")
        self.history.save(path.parent / "history.csv")
        return path

    @classmethod
    def from_checkpoint(cls, path, train, *, val=None, epochs: int | None = None, out_dir=None,
                        callbacks=()) -> Trainer:
        """Continue a saved run exactly where it stopped.

        The architecture, optimizer (with its caches), schedule, augmentation,
        normalisation, random generators and position come from the
        checkpoint; the data sets are passed in again. ``epochs`` may extend
        the run; ``out_dir`` defaults to the checkpoint's folder.
        """
        from ..data.augment import Augment
        from ..optim import optimizer_from_config, schedule_from_config

        path = Path(path)
        net, normalizer, tensors, metadata = ckpt.load_model(path)
        optimizer = optimizer_from_config(net.params(), metadata["optimizer"]["config"])
        run = metadata["train"]
        extra = {k: v for k, v in metadata.items() if k not in _RUN_KEYS}
        trainer = cls(
            net, optimizer, train, val=val, epochs=epochs or run["epochs"], batch_size=run["batch_size"],
            loss=run["loss"], seed=run["seed"],
            schedule=schedule_from_config(metadata["schedule"]) if metadata["schedule"] else None,
            augment=Augment.from_config(metadata["augment"]) if metadata["augment"] else None,
            normalizer=normalizer,
            out_dir=out_dir if out_dir is not None else path.parent, callbacks=callbacks, extra_metadata=extra)
        trainer.load_state(tensors, metadata, source=str(path))
        return trainer

    def load_state(self, tensors: dict, metadata: dict, source="checkpoint") -> None:
        """Restore a saved run into this trainer (same architecture and optimizer)."""
        ckpt.load_network_tensors(self.net, tensors, source)
        arrays = {}
        for key in tensors:
            if key.startswith("optimizer."):
                _, name, j = key.rsplit(".", 2)
                arrays.setdefault(name, {})[int(j)] = tensors[key]
        self.optimizer.load_state_dict({"arrays": {name: [items[j] for j in sorted(items)]
                                                   for name, items in arrays.items()},
                                        "scalars": metadata["optimizer"]["scalars"]})
        saved = metadata["position"]
        self.position = _Position(epoch=saved["epoch"], batch=saved["batch"], order=tensors.get("trainer.order"),
                                  loss_sum=saved["loss_sum"], correct=saved["correct"], seen=saved["seen"],
                                  seconds=saved["seconds"])
        self.rng = ckpt.restore_generator(metadata["rng"]["trainer"])
        for key, state in metadata["rng"]["layers"].items():
            ckpt.set_layer_generator(self.net, key, ckpt.restore_generator(state))
        self.history = History.from_list(metadata["history"])


@dataclass(frozen=True)
class _Arrays:
    images: np.ndarray
    labels: np.ndarray


def fit(net, images, labels, optimizer, *, epochs: int = 1, batch_size: int = 64, loss: str = "softmax",
        seed: int = 0, on_epoch=None) -> History:
    """Train ``net`` in place on arrays, without checkpoints; ``on_epoch(record)`` after each epoch."""
    callbacks = []
    if on_epoch is not None:
        callback = Callback()
        callback.on_epoch = on_epoch
        callbacks.append(callback)
    trainer = Trainer(net, optimizer, _Arrays(np.asarray(images), np.asarray(labels)), epochs=epochs,
                      batch_size=batch_size, loss=loss, seed=seed, callbacks=callbacks)
    return trainer.run()
