"""Engines: what computes a training step, apart from the loop around it.

The :class:`~volnet.train.Trainer` keeps everything that does not depend on
how a step is computed: epochs, the order of each epoch drawn from the
seeded generator, augmentation (with the same draws), normalisation,
schedules, history, the run folder and its lock, signals and checkpoints.
An engine computes the step, in two phases so that a diverged loss is
refused before any weight changes:

* :meth:`Engine.forward` forwards a batch in training mode and scores it
  with the loss (a :class:`StepResult`: the batch's mean loss, images
  classified right, whether every score is finite);
* :meth:`Engine.update` backpropagates that loss and applies the optimizer.

and the rest of the contract: :meth:`~Engine.inference_loss` (the check of
an update before it is saved), :meth:`~Engine.evaluate` (validation),
:meth:`~Engine.start` / :meth:`~Engine.pull` / :meth:`~Engine.finish` (the
volnet ``net`` and ``optimizer`` are the source of truth outside
:meth:`Trainer.run`: an engine takes them at the start and writes its
weights and optimizer state back before every checkpoint and at the end),
and, for engines with several workers, :meth:`~Engine.agree`,
:meth:`~Engine.barrier` and :attr:`~Engine.writes_files`.

Two engines implement it: :class:`Engine` itself is the NumPy engine
(``net.forward`` / ``net.backward`` / ``optimizer.step``), and
:class:`volnet.interop.torch_engine.TorchEngine` runs the same network in
PyTorch (CPU or CUDA, one process or DistributedDataParallel workers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops.losses import LOSSES
from .loop import class_weights, evaluate


@dataclass(frozen=True)
class StepResult:
    """What the forward phase of a step found, over the whole batch (every worker's share of it).

    Attributes:
        loss: mean loss over the batch (NaN when ``finite`` is False).
        correct: images of the batch whose top score is their label.
        finite: every class score is finite.
    """

    loss: float
    correct: int
    finite: bool


class Engine:
    """The NumPy engine: volnet's own layers and optimizers; also the interface every engine follows.

    One process, one worker: it writes the run's files, :meth:`agree` and
    :meth:`barrier` have no one to agree with.
    """

    name = "numpy"
    rank, world = 0, 1
    # Per-class weights (C,) of the loss's mean (--class-weight), set by the trainer; None: a plain mean.
    class_weight = None

    def __init__(self):
        self.net = self.optimizer = None
        self._dscores = None

    @property
    def writes_files(self) -> bool:
        """True for the worker that writes checkpoints and history (rank 0); the others wait at :meth:`barrier`."""
        return self.rank == 0

    def start(self, net, optimizer) -> None:
        """Take ``net`` and ``optimizer`` (weights, buffers, caches, step count) as they are now."""
        self.net, self.optimizer = net, optimizer

    def forward(self, images: np.ndarray, labels: np.ndarray, loss: str) -> StepResult:
        """Forward the batch in training mode and score it; keeps what :meth:`update` needs."""
        volume = self.net.forward(images, train=True)
        scores = volume.reshape(len(volume), -1)  # a net ending in GAP gives N x 1 x 1 x classes
        if not np.all(np.isfinite(scores)):
            return StepResult(float("nan"), 0, False)
        value, dscores = LOSSES[loss](scores, labels, **class_weights(self.class_weight, labels))
        self._dscores = dscores.reshape(volume.shape)
        return StepResult(value, int((scores.argmax(axis=1) == labels).sum()), True)

    def update(self) -> None:
        """Backpropagate the loss of the last :meth:`forward` and apply the optimizer at ``optimizer.lr``."""
        self.net.backward(self._dscores, input_grad=False)
        self._dscores = None
        self.optimizer.step()

    def inference_loss(self, images: np.ndarray, labels: np.ndarray, loss: str) -> tuple[bool, float]:
        """``(every score finite, mean loss)`` of the batch in inference mode."""
        scores = self.net.forward(images, train=False).reshape(len(images), -1)
        if not np.all(np.isfinite(scores)):
            return False, float("nan")
        return True, LOSSES[loss](scores, labels, **class_weights(self.class_weight, labels))[0]

    def evaluate(self, images, labels, batch_size: int, loss: str, transform=None) -> tuple[float, float]:
        """``(mean loss, accuracy)`` on a labelled set, in inference mode."""
        return evaluate(self.net, images, labels, batch_size=batch_size, loss=loss, transform=transform,
                        class_weight=self.class_weight)

    def pull(self) -> None:
        """Write the engine's weights, buffers and optimizer state into ``net`` and ``optimizer``."""

    def finish(self) -> None:
        """The run has ended (done, stopped or failed): leave ``net`` and ``optimizer`` up to date."""
        self.pull()

    def agree(self, value: int) -> int:
        """The largest ``value`` of all workers: a stop asked on one (its signal number) reaches every worker."""
        return int(value)

    def barrier(self) -> None:
        """Wait until every worker gets here (the others wait while rank 0 writes a checkpoint)."""


NumpyEngine = Engine
