"""Keep the best epoch, stop when it stops improving (Keras' ``ModelCheckpoint(save_best_only=True)`` and
``EarlyStopping``).

A :class:`Watch` follows one validation figure of each epoch (``val_accuracy``,
higher is better, or ``val_loss``, lower is better) and remembers the epoch
where it was best. The trainer asks it after every epoch whether this epoch is
the new best (then it writes ``best.safetensors`` beside the checkpoint) and
whether ``patience`` epochs have passed without improvement (then the run
stops). Its state is the checkpoint header's optional ``best`` field, so a
resumed run goes on comparing with the same best epoch and counting the same
epochs without improvement.

An epoch improves on the best when its figure is strictly better; the first
epoch always does.
"""

from __future__ import annotations

from dataclasses import dataclass

MONITORS = ("val_accuracy", "val_loss")


@dataclass
class Watch:
    """What the run watches and where it stands.

    Attributes:
        monitor: ``"val_accuracy"`` (higher is better) or ``"val_loss"`` (lower is better).
        keep: write ``best.safetensors`` at every new best (``--keep-best``).
        patience: stop after this many epochs without improvement (``--early-stop``); None never stops.
        epoch: the best epoch so far (None before the first epoch ends).
        score: its figure.
        stopped: the run stopped early (a resumed run has nothing left to train).
    """

    monitor: str = "val_accuracy"
    keep: bool = True
    patience: int | None = None
    epoch: int | None = None
    score: float | None = None
    stopped: bool = False

    def __post_init__(self):
        if self.monitor not in MONITORS:
            raise ValueError(f"the figure to watch must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"early-stop patience must be an integer >= 1, got {self.patience!r}")

    def improves(self, value: float) -> bool:
        if self.score is None:
            return True
        return value > self.score if self.monitor == "val_accuracy" else value < self.score

    def update(self, record) -> bool:
        """Take one epoch's :class:`~volnet.train.history.EpochRecord`; True when it is the new best.

        Sets :attr:`stopped` when ``patience`` epochs have now passed since the best one.
        """
        value = getattr(record, self.monitor)
        if value is None:
            raise ValueError(f"watching {self.monitor} needs validation images; give the run a validation set")
        improved = self.improves(value)
        if improved:
            self.epoch, self.score = record.epoch, float(value)
        if self.patience is not None and record.epoch - self.epoch >= self.patience:
            self.stopped = True
        return improved

    def describe(self) -> str:
        """``"epoch 3 (val_accuracy 0.9120)"``: the best so far, for messages."""
        return f"epoch {self.epoch} ({self.monitor} {self.score:.4f})"

    def get_config(self) -> dict:
        """The header's ``best`` field."""
        return {"monitor": self.monitor, "keep": self.keep, "patience": self.patience, "epoch": self.epoch,
                "score": self.score, "stopped": self.stopped}

    @classmethod
    def from_config(cls, config: dict) -> Watch:
        """The watch :meth:`get_config` described; fields a later version may add are ignored."""
        return cls(**{key: config[key] for key in cls.__dataclass_fields__ if key in config})
