"""What a checkpoint holds of a run, as objects: where it stands (:class:`Position`), how it trains
(:class:`RunSettings`) and all of it together (:class:`RunState`), which :func:`volnet.train.checkpoint.pack_run`
writes and :func:`~volnet.train.checkpoint.unpack_run` gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .history import History


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
    watch: Any = None  # a volnet.train.best.Watch (--keep-best, --early-stop), or None
    class_weight: Any = None  # per-class weights of the loss (--class-weight), a list of C floats, or None


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
