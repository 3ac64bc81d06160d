"""Learning-rate schedules: pure functions of the position ``t``.

A schedule is a small object whose :meth:`~Schedule.lr_at` maps a position
``t = 0, 1, 2, ...`` (an epoch or a step, whichever the trainer counts; the
first one is 0, as in torch's schedulers) to a learning rate. It keeps no
state but its hyperparameters, so resuming needs only the position. The
trainer applies it with ``optimizer.lr = schedule.lr_at(t)``.

Example:
    >>> s = LinearWarmup(CosineAnnealing(lr=0.1, T=10), warmup=2)
    >>> [round(s.lr_at(t), 4) for t in (0, 1, 2, 7, 12)]
    [0.01, 0.055, 0.1, 0.05, 0.0]
"""

from __future__ import annotations

import math
import operator

from .base import check_hyperparameter, check_learning_rate, constructor_config, constructor_repr


def _position(t) -> int:
    t = operator.index(t)
    if t < 0:
        raise ValueError(f"schedule position must be >= 0, got {t}")
    return t


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class Schedule:
    """Base class: subclasses set ``name`` and implement :meth:`_lr_at`."""

    name: str = ""

    def lr_at(self, t: int) -> float:
        """The learning rate at position ``t`` (>= 0)."""
        return float(self._lr_at(_position(t)))

    def _lr_at(self, t: int) -> float:
        raise NotImplementedError

    def for_epochs(self, epochs: int) -> Schedule:
        """This schedule fitted to a run of ``epochs`` epochs (what extending a run does).

        Only a schedule with an end (cosine annealing) changes: it is stretched
        to end at the new last epoch, so an extended run continues from the
        longer cosine at the epoch reached (a warm restart, as in SGDR) instead
        of training on at ``min_lr``. Step decay and constant rates continue
        unchanged.
        """
        return self

    def get_config(self) -> dict:
        """``{"name": ..., **constructor arguments}``: :func:`schedule_from_config` rebuilds it."""
        return constructor_config(self)

    def __repr__(self) -> str:
        return constructor_repr(self)


class Constant(Schedule):
    """``lr`` at every position."""

    name = "constant"

    def __init__(self, lr: float):
        self.lr = check_learning_rate(lr)

    def _lr_at(self, t):
        return self.lr


class StepDecay(Schedule):
    """Multiply by ``gamma`` every ``every`` positions: ``lr * gamma ** (t // every)``.

    torch's ``StepLR(step_size=every, gamma=gamma)``. Default: gamma 0.1.
    """

    name = "step"

    def __init__(self, lr: float, every: int, gamma: float = 0.1):
        self.lr = check_learning_rate(lr)
        self.every = _count("every", every)
        self.gamma = check_hyperparameter("gamma", gamma, 0 < gamma <= 1, "in (0, 1]")

    def _lr_at(self, t):
        return self.lr * self.gamma ** (t // self.every)


class CosineAnnealing(Schedule):
    """Half a cosine from ``lr`` at ``t = 0`` down to ``min_lr`` at ``t = T``, then ``min_lr``.

    ``min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2`` for ``t <= T``: torch's
    ``CosineAnnealingLR(T_max=T, eta_min=min_lr)`` up to ``T`` (beyond it torch
    climbs back up; here the rate stays at ``min_lr``). Default: min_lr 0.
    """

    name = "cosine"

    def __init__(self, lr: float, T: int, min_lr: float = 0.0):
        self.lr = check_learning_rate(lr)
        self.T = _count("T", T)
        self.min_lr = check_hyperparameter("min_lr", min_lr, 0 <= min_lr <= lr, f"in [0, lr={lr}]")

    def _lr_at(self, t):
        t = min(t, self.T)
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * t / self.T)) / 2

    def for_epochs(self, epochs: int) -> Schedule:
        return CosineAnnealing(self.lr, T=epochs, min_lr=self.min_lr)


class LinearWarmup(Schedule):
    """Ramp linearly up to another schedule's first rate, then run that schedule.

    For ``t < warmup``: ``schedule.lr_at(0) * (start_factor + (1 - start_factor) * t / warmup)``;
    from ``t = warmup`` on: ``schedule.lr_at(t - warmup)`` (the wrapped schedule starts
    after the warm-up, as with torch's ``SequentialLR([LinearLR, ...], milestones=[warmup])``).
    Default: start_factor 0.1 (torch's ``LinearLR`` uses 1/3).
    """

    name = "warmup"

    def __init__(self, schedule: Schedule, warmup: int, start_factor: float = 0.1):
        if not isinstance(schedule, Schedule):
            raise ValueError(f"LinearWarmup wraps a Schedule, got {schedule!r}")
        self.schedule = schedule
        self.warmup = _count("warmup", warmup)
        self.start_factor = check_hyperparameter("start_factor", start_factor, 0 < start_factor <= 1, "in (0, 1]")

    def _lr_at(self, t):
        if t >= self.warmup:
            return self.schedule.lr_at(t - self.warmup)
        return self.schedule.lr_at(0) * (self.start_factor + (1 - self.start_factor) * t / self.warmup)

    def for_epochs(self, epochs: int) -> Schedule:
        return LinearWarmup(self.schedule.for_epochs(epochs - self.warmup), self.warmup, self.start_factor)

    def get_config(self) -> dict:
        return {**super().get_config(), "schedule": self.schedule.get_config()}


SCHEDULES: dict[str, type[Schedule]] = {cls.name: cls for cls in (Constant, StepDecay, CosineAnnealing, LinearWarmup)}


def schedule_from_config(config: dict) -> Schedule:
    """Rebuild a schedule (nested ones included) from its :meth:`~Schedule.get_config`."""
    name = config.get("name")
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    kwargs = {k: v for k, v in config.items() if k != "name"}
    if "schedule" in kwargs:
        kwargs["schedule"] = schedule_from_config(kwargs["schedule"])
    return SCHEDULES[name](**kwargs)
