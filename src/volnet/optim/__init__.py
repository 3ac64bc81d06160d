"""Optimizers and learning-rate schedules.

An optimizer receives the list of :class:`~volnet.layers.Param` once, knows
nothing about layers, and keeps its per-parameter state (the "step cache" the
notes count in memory) itself: see :mod:`volnet.optim.base`. The update rules
are in :mod:`volnet.optim.rules`, the schedules in :mod:`volnet.optim.schedules`.

Example:
    >>> import numpy as np
    >>> from volnet.layers import Param
    >>> p = Param("w", np.ones(3))
    >>> opt = make_optimizer("adam", [p], lr=0.1)
    >>> p.grad = np.array([1.0, -1.0, 0.0])
    >>> opt.step()
    >>> p.value.round(3).tolist(), opt.cache_multiplier
    ([0.9, 1.1, 1.0], 2)
"""

from .base import Optimizer
from .rules import OPTIMIZERS, SGD, Adagrad, Adam, RMSProp, cache_multiplier, make_optimizer, optimizer_from_config
from .schedules import (SCHEDULES, Constant, CosineAnnealing, LinearWarmup, Schedule, StepDecay,
                        schedule_from_config)

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSProp", "Adam", "OPTIMIZERS", "make_optimizer", "optimizer_from_config",
    "cache_multiplier", "Schedule", "Constant", "StepDecay", "CosineAnnealing", "LinearWarmup", "SCHEDULES",
    "schedule_from_config",
]
