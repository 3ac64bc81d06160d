"""Why a run stops before its last epoch: :class:`TrainingInterrupted` (Ctrl-C or SIGTERM, saying what was kept)
and :class:`TrainingDiverged` (a NaN/Inf loss or parameter, or a loss over :data:`EXPLODED_LOSS_FACTOR` times
that of guessing at chance)."""

from __future__ import annotations

import math

# A loss this many times that of guessing at chance has exploded, even while it is still finite.
EXPLODED_LOSS_FACTOR = 1000


class TrainingDiverged(ValueError):
    """The loss or the parameters became NaN/Inf, or the loss exploded; nothing diverged was saved."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; says what was really kept.

    Attributes:
        signal: the signal number (``signal.SIGINT`` or ``signal.SIGTERM``).
        saved: True when this stop wrote a checkpoint of the position it stopped at.
        checkpoint: the newest checkpoint on disk of this run (None if it has none).
        epoch, batch: the position that checkpoint holds (epochs completed, batches into the next).
    """

    def __init__(self, message, *, signal, saved, checkpoint, epoch=0, batch=0):
        super().__init__(message)
        self.signal, self.saved, self.checkpoint, self.epoch, self.batch = signal, saved, checkpoint, epoch, batch


def chance_loss(loss: str, classes: int) -> float:
    """The loss of scores that say nothing (all equal): ln(C) for softmax, (C - 1) * margin for the SVM."""
    return math.log(classes) if loss == "softmax" else float(classes - 1)
