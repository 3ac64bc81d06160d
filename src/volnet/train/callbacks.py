"""The trainer's progress events: :class:`Callback`'s hooks, called at the start of an epoch, after each batch
(with a :class:`BatchProgress`) and after each epoch (with its :class:`~volnet.train.history.EpochRecord`).
The trainer itself never prints; a progress bar is a callback."""

from __future__ import annotations

from dataclasses import dataclass

from .history import EpochRecord


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
