"""Trainer: epochs of mini-batches, validation, history, checkpoints, exact resume.

One training step is the notes' loop: forward a batch, score it with the
loss, backpropagate, update every parameter. Around it the trainer keeps
what a long CPU run needs:

* per-epoch train/validation loss and accuracy, images/s (:class:`History`);
* progress events for a progress bar (:class:`~volnet.train.callbacks.Callback`; the trainer itself
  never prints);
* a checkpoint after every epoch and on Ctrl-C or SIGTERM, written
  atomically, into a run folder that one run at a time holds
  (:class:`~volnet.train.run_folder.RunFolder`);
* optionally the best epoch kept in ``best.safetensors`` and a stop when the
  validation figure stops improving (:class:`~volnet.train.best.Watch`);
* a stop with a clear message when the loss turns NaN/Inf or explodes, and
  never a checkpoint whose parameters or optimizer state are not finite;
* exact resume: all randomness (shuffling, augmentation, dropout) comes from
  generators whose states are saved, and an interrupted epoch resumes at the
  batch where it stopped, so interrupted + resumed == uninterrupted.

How a step is computed is the engine's (:mod:`volnet.train.engines`): the
NumPy engine by default, or PyTorch (:class:`volnet.interop.torch_engine.TorchEngine`,
CPU, CUDA or DistributedDataParallel workers); everything above is the same on both.

What a checkpoint holds and how is the format module's
(:mod:`volnet.train.checkpoint`): the trainer hands it a
:class:`~volnet.train.state.RunState` and takes one back.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..ops.losses import LOSSES
from . import checkpoint as ckpt
from .best import Watch
from .callbacks import BatchProgress
from .class_weight import checked_class_weight
from .history import EpochRecord, History
from .restore import network_tensors
from .state import Position, RunSettings, RunState
from .engines import Engine
from .finetune import check_frozen, check_optimizer
from .loop import check_labelled
from .run_folder import RunExists, RunFolder
from .stops import EXPLODED_LOSS_FACTOR, TrainingDiverged, TrainingInterrupted, chance_loss


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
        out_dir: the run folder for the checkpoint and the history files
            (a :class:`~volnet.train.run_folder.RunFolder`); None saves nothing.
        overwrite: replace a run that ``out_dir`` already holds (otherwise
            :meth:`run` refuses with :class:`~volnet.train.run_folder.RunExists`).
        extra_metadata: JSON-able facts stored in every checkpoint (data set name...).
        engine: what computes each step (:mod:`volnet.train.engines`): None for the NumPy
            engine, or a :class:`volnet.interop.torch_engine.TorchEngine`. Everything else
            (order, augmentation, schedule, history, checkpoints) is the same on every engine.
        keep_best: ``"val_accuracy"`` or ``"val_loss"``: after every epoch that improves that
            figure, write ``best.safetensors`` beside the checkpoint (with ``out_dir``; without
            one, :attr:`best_weights` holds a copy of the weights). Needs ``val``.
        class_weight: one weight per class (``C``): the loss becomes the weighted mean
            ``sum_i w[y_i] L_i / sum_i w[y_i]`` (PyTorch's ``cross_entropy(weight=...)``), in
            training and validation, on every engine; see :func:`~volnet.train.class_weight.balanced_class_weight`.
        early_stop: stop after this many epochs without improvement of the ``keep_best``
            figure (``val_loss`` without ``keep_best``); :attr:`watch` says which epoch was best.
            Needs ``val``.

    Attributes:
        watch: the :class:`~volnet.train.best.Watch` of ``keep_best``/``early_stop`` (None without them).
        best_weights: with ``keep_best`` and no ``out_dir``, the best epoch's parameters and buffers
            (``layers.<i>.<name>`` as in the checkpoint), else None.
    """

    def __init__(self, net, optimizer, train, *, val=None, epochs: int = 10, batch_size: int = 64,
                 loss: str = "softmax", schedule=None, augment=None, normalizer=None, seed: int = 0,
                 out_dir=None, overwrite: bool = False, callbacks=(), extra_metadata=None, engine=None,
                 keep_best: str | None = None, early_stop: int | None = None, class_weight=None):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
        self.net, self.optimizer, self.train, self.val = net, optimizer, train, val
        if net.frozen:
            check_frozen(net)
            check_optimizer(net, optimizer)
        check_labelled(net, train.images, train.labels, "training")
        if val is not None:
            check_labelled(net, val.images, val.labels, "validation")
        if hasattr(augment, "check"):  # e.g. a crop pad larger than the images, refused before training starts
            augment.check(train.images.shape[1:])
        self.epochs, self.batch_size, self.loss = epochs, batch_size, loss
        self.schedule, self.augment, self.normalizer = schedule, augment, normalizer
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.overwrite = overwrite
        self.callbacks = list(callbacks)
        self.extra_metadata = dict(extra_metadata or {})
        self.engine = engine if engine is not None else Engine()
        self.watch = None
        if keep_best is not None or early_stop is not None:
            if val is None:
                raise ValueError("keeping the best epoch and stopping early compare validation figures; "
                                 "give the run validation images (val=..., --val-split above 0)")
            self.watch = Watch(keep_best or "val_loss", keep=keep_best is not None, patience=early_stop)
        self.best_weights = None
        self.class_weight = checked_class_weight(class_weight, net.output_shape[-1])
        self.engine.class_weight = self.class_weight
        self.history = History()
        self.position = Position()
        self._stop_requested = False
        self._stop_signal = signal.SIGINT
        self._saving = False
        self._loss_limit = EXPLODED_LOSS_FACTOR * chance_loss(loss, net.output_shape[-1])
        # The newest checkpoint of this run on disk, and the (epoch, batch) it holds.
        self._last_checkpoint: Path | None = None
        self._saved_at: tuple[int, int] | None = None

    # -- the loop --------------------------------------------------------
    def run(self) -> History:
        """Train until ``epochs`` are done; returns the history.

        Before the first step the run folder is created, checked and locked
        (:class:`~volnet.train.run_folder.RunFolder`). Ctrl-C or SIGTERM (or
        :meth:`request_stop`) finishes the current step, saves a checkpoint
        and raises :class:`TrainingInterrupted`. A second signal during a
        step stops at once without saving the torn step; during a save, the
        save completes first. The exception says which happened.
        """
        # Overflow is detected and reported as divergence, so NumPy's warnings about it would only repeat it.
        with self._holding_run_folder(), self._deferred_interrupt(), np.errstate(over="ignore", invalid="ignore"):
            self.engine.start(self.net, self.optimizer)
            try:
                while self.position.epoch < self.epochs and not (self.watch and self.watch.stopped):
                    self._run_epoch(self.position.epoch + 1)
            except TrainingInterrupted:
                raise
            except KeyboardInterrupt:
                raise self._interrupted() from None
            finally:
                self.engine.finish()
        return self.history

    def request_stop(self) -> None:
        """Stop after the current step, saving a checkpoint (what Ctrl-C and SIGTERM do)."""
        self._stop_requested = True

    def extend(self, epochs: int) -> None:
        """Make the run ``epochs`` long, fitting the schedule to the new length (see :meth:`Schedule.for_epochs`)."""
        if epochs < self.position.epoch:
            raise ValueError(f"the run has already trained {self.position.epoch} epochs; {epochs} would end it "
                             "before where it stands")
        self.epochs = epochs
        if self.schedule is not None:
            self.schedule = self.schedule.for_epochs(epochs)

    def _run_epoch(self, epoch: int) -> None:
        if self._stop_asked():  # during the last epoch's validation or save
            self._stop()
        pos, n = self.position, len(self.train.labels)
        if pos.order is None:
            pos.order = self.rng.permutation(n)
        if self.schedule is not None:
            self.optimizer.lr = float(self.schedule.lr_at(epoch - 1))
        batches = -(-n // self.batch_size)
        if hasattr(self.train.images, "read_ahead"):  # images on disk (FolderImages): read this epoch's batches ahead
            self.train.images.read_ahead(pos.order[b * self.batch_size: (b + 1) * self.batch_size]
                                         for b in range(pos.batch, batches))
        for callback in self.callbacks:
            callback.on_epoch_start(epoch, self.epochs, batches)
        images = None  # none when a run resumes after the epoch's last step, which was verified before its save
        while pos.batch < batches:
            started = time.perf_counter()
            index = pos.order[pos.batch * self.batch_size: (pos.batch + 1) * self.batch_size]
            images, labels = self.train.images[index], self.train.labels[index]
            if self.augment is not None:
                images = self.augment(images, self.rng)
            if self.normalizer is not None:
                images = self.normalizer(images)
            step = self.engine.forward(images, labels, self.loss)
            if not step.finite:
                self._diverged(f"the class scores became NaN/Inf at epoch {epoch}, batch {pos.batch + 1}")
            self._check_loss(step.loss, "the loss", f"epoch {epoch}, batch {pos.batch + 1}")
            self.engine.update()
            pos.batch += 1
            pos.loss_sum += step.loss * len(index)
            pos.correct += step.correct
            pos.seen += len(index)
            pos.seconds += time.perf_counter() - started
            progress = BatchProgress(epoch, self.epochs, pos.batch, batches, pos.loss_sum / pos.seen,
                                     pos.correct / pos.seen, pos.seen / max(pos.seconds, 1e-9))
            for callback in self.callbacks:
                callback.on_batch(progress)
            if self._stop_asked():
                self._verify_update(images, labels, f"epoch {epoch}, batch {pos.batch}")
                self._stop()
        if images is not None:
            self._verify_update(images, labels, f"the end of epoch {epoch}")
        val_loss, val_accuracy = self.evaluate(self.val) if self.val is not None else (None, None)
        if val_loss is not None:
            self._check_loss(val_loss, "the validation loss", f"the end of epoch {epoch}")
        record = EpochRecord(epoch, self.optimizer.lr, pos.loss_sum / pos.seen, pos.correct / pos.seen,
                             val_loss, val_accuracy, pos.seconds, pos.seen / max(pos.seconds, 1e-9))
        self.history.records.append(record)
        self.position = Position(epoch=epoch)
        improved = self.watch is not None and self.watch.update(record) and self.watch.keep
        self.save(best=improved)
        for callback in self.callbacks:
            callback.on_epoch(record)

    def _stop_asked(self) -> bool:
        """A stop was asked here or on another worker: all of them stop at this step, with the signal received."""
        signum = self.engine.agree(int(self._stop_signal) if self._stop_requested else 0)
        if signum:
            self._stop_requested, self._stop_signal = True, signum
        return bool(signum)

    def _check_loss(self, value: float, what: str, where: str) -> None:
        """Stop on a NaN/Inf loss, or one that exploded (over 1000x the loss of guessing at chance)."""
        if not np.isfinite(value):
            self._diverged(f"{what} became NaN/Inf at {where}")
        if value > self._loss_limit:
            self._diverged(f"{what} exploded to {value:.3g} at {where}, over {EXPLODED_LOSS_FACTOR}x the "
                           f"{self._loss_limit / EXPLODED_LOSS_FACTOR:.3g} of guessing at chance")

    def _verify_update(self, images, labels, where: str) -> None:
        """Check the weights an update left before they are saved: the last batch's loss, in inference mode."""
        finite, value = self.engine.inference_loss(images, labels, self.loss)
        if not finite:
            self._diverged(f"the class scores after the last update became NaN/Inf at {where}")
        self._check_loss(value, "the loss after the last update", where)

    def _diverged(self, what: str):
        self.position = Position(epoch=self.position.epoch)  # what is saved stays the last good state
        if self._last_checkpoint is not None:
            kept = f"; the last good checkpoint is {self._last_checkpoint} ({self._describe_saved()})"
        elif self.out_dir is not None:
            kept = "; no checkpoint was written (it diverged before the first one)"
        else:
            kept = ""
        raise TrainingDiverged(f"training diverged: {what} (learning rate {self.optimizer.lr:g}); lower the "
                               f"learning rate or check the data for NaN/Inf{kept}")

    def _describe_saved(self) -> str:
        epoch, batch = self._saved_at
        return f"{epoch} epochs done" + (f", {batch} batches into epoch {epoch + 1}" if batch else "")

    def _stop(self):
        """Save the position reached (unless the newest checkpoint holds it already) and stop."""
        if self._saved_at != (self.position.epoch, self.position.batch):
            self.save()
        raise self._interrupted()

    def _interrupted(self) -> TrainingInterrupted:
        pos = self.position
        saved = self._last_checkpoint is not None and self._saved_at == (pos.epoch, pos.batch)
        name = signal.Signals(self._stop_signal).name
        if saved:
            message = f"{name}: progress saved to {self._last_checkpoint} ({self._describe_saved()})"
        elif self._last_checkpoint is not None:
            message = (f"{name} twice: stopped during a step, which was not saved; the newest checkpoint is "
                       f"{self._last_checkpoint} ({self._describe_saved()})")
        else:
            message = f"{name}: stopped before any checkpoint was written; nothing was saved"
        epoch, batch = self._saved_at or (0, 0)
        return TrainingInterrupted(message, signal=self._stop_signal, saved=saved, checkpoint=self._last_checkpoint,
                                   epoch=epoch, batch=batch)

    def evaluate(self, data) -> tuple[float, float]:
        """``(mean loss, accuracy)`` on a data set, in inference mode, normalised like training.

        Batches of the training batch size: what fits for a training step fits for inference.
        """
        return self.engine.evaluate(data.images, data.labels, self.batch_size, self.loss, self.normalizer)

    @contextmanager
    def _deferred_interrupt(self):
        """Turn Ctrl-C and SIGTERM into a stop request honoured between steps, so no update is torn."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if not self._stop_requested:
                self._stop_signal = signum
                self.request_stop()
            elif not self._saving:  # a second signal during a step: stop now; the torn step is not saved
                raise KeyboardInterrupt
            # a second signal during a save: the save completes, then the run stops as first asked

        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {number: signal.getsignal(number) for number in stops}
        for number in stops:
            signal.signal(number, handler)
        try:
            yield
        finally:
            for number, action in previous.items():
                signal.signal(number, action if action is not None else signal.SIG_DFL)
            self._stop_requested = False

    @contextmanager
    def _holding_run_folder(self):
        """Create, check and lock the run folder before any training is done; clean what killed saves left."""
        if self.out_dir is None or not self.engine.writes_files:  # other workers leave the folder to rank 0
            yield
            return
        folder = RunFolder(self.out_dir)
        folder.prepare()
        ckpt.safetensors_module()  # a missing package is found now, not after the first epoch
        with folder.lock():
            folder.remove_stale_temp_files()
            if self._last_checkpoint is not None:
                self._save_history(folder)  # a kill between the two writes leaves the history behind
            elif folder.holds_run():
                if not self.overwrite:
                    raise RunExists(f"{folder.path} already holds a run ({folder.checkpoint}); continue it with "
                                    f"--resume {folder.checkpoint}, replace it with --overwrite, or choose "
                                    "another --out")
                folder.clear()
            yield

    # -- checkpoints -----------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return RunFolder(self.out_dir).checkpoint if self.out_dir is not None else None

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything needed to continue this run: ``(tensors, metadata)``, packed by the format module."""
        settings = RunSettings(self.epochs, self.batch_size, self.loss, self.seed, self.schedule, self.augment,
                               self.normalizer, self.watch, self.class_weight)
        return ckpt.pack_run(RunState(self.net, self.optimizer, self.position, self.rng, self.history, settings,
                                      self.extra_metadata))

    @property
    def best_path(self) -> Path | None:
        """``best.safetensors`` in the run folder (written with ``keep_best`` only)."""
        return RunFolder(self.out_dir).best if self.out_dir is not None else None

    def save(self, path=None, *, best: bool = False) -> Path | None:
        """Write the checkpoint (and the history files) atomically; returns the checkpoint path.

        ``best``: this state is the run's best epoch: write it to :attr:`best_path` too, first, so that
        a checkpoint never names a best epoch that ``best.safetensors`` does not hold yet (without
        ``out_dir``, keep a copy of the weights in :attr:`best_weights` instead).

        Raises:
            TrainingDiverged: a parameter or optimizer state holds NaN/Inf; nothing is written.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            if best:
                self.engine.pull()
                self.best_weights = {name: value.copy() for name, value in network_tensors(self.net).items()}
            return None
        self.engine.pull()  # the engine's weights and optimizer state into net and optimizer
        tensors, metadata = self.state()
        for name, array in tensors.items():
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                self._diverged(f"the tensor {name} became NaN/Inf by epoch {self.position.epoch + 1}, so it "
                               "was not saved")
        self._saving = True
        try:
            if self.engine.writes_files:  # one worker writes; the others wait at the barrier
                if best:
                    ckpt.save(path.parent / ckpt.BEST_NAME, tensors, metadata)
                ckpt.save(path, tensors, metadata)
                self._save_history(RunFolder(path.parent))
        finally:
            self._saving = False
        self.engine.barrier()
        if path == self.checkpoint_path:
            self._last_checkpoint, self._saved_at = path, (self.position.epoch, self.position.batch)
        return path

    def _save_history(self, folder: RunFolder) -> None:
        for history_file in folder.history_files:
            self.history.save(history_file)

    @classmethod
    def from_checkpoint(cls, path, train, *, val=None, epochs: int | None = None, out_dir=None, callbacks=(),
                        state: tuple[dict, dict] | None = None, engine=None) -> Trainer:
        """Continue a saved run exactly where it stopped.

        The architecture, optimizer (with its caches), schedule, augmentation,
        normalisation, random generators and position come from the
        checkpoint; the data sets are passed in again. ``epochs`` may extend
        the run; ``out_dir`` defaults to the checkpoint's folder. ``state`` is
        the checkpoint's ``(tensors, metadata)`` when the caller has already
        read ``path`` (:func:`~volnet.train.checkpoint.read`), so it is read once. ``engine`` may
        differ from the one that wrote the checkpoint (the format is the same).
        """
        path = Path(path)
        tensors, metadata = state if state is not None else ckpt.read(path)
        run = ckpt.unpack_run(tensors, metadata, str(path), images=len(train.labels))
        settings = run.settings
        # what the header says of the data must fit the data the run continues on: a field that does not, named
        for field, check in (("augment", lambda: settings.augment and settings.augment.check(train.images.shape[1:])),
                             ("train.class_weight",
                              lambda: checked_class_weight(settings.class_weight, run.net.output_shape[-1]))):
            try:
                check()
            except ValueError as error:
                raise ckpt.CheckpointError(f"{path}: field {field!r} does not fit the training data: {error}") from None
        trainer = cls(
            run.net, run.optimizer, train, val=val, epochs=epochs or settings.epochs,
            batch_size=settings.batch_size, loss=settings.loss, seed=settings.seed, schedule=settings.schedule,
            augment=settings.augment, normalizer=settings.normalizer,
            out_dir=out_dir if out_dir is not None else path.parent, callbacks=callbacks, extra_metadata=run.extra,
            engine=engine, class_weight=settings.class_weight)
        trainer.position, trainer.rng, trainer.history = run.position, run.rng, run.history
        trainer.watch = settings.watch
        if trainer.checkpoint_path == path:
            trainer._last_checkpoint, trainer._saved_at = path, (trainer.position.epoch, trainer.position.batch)
        return trainer
