"""Optimizers: update parameters from their gradients.

An optimizer receives the list of :class:`~volnet.layers.Param` once and
knows nothing about layers. Its per-parameter state (the "step cache" the
notes count in memory: one velocity array per parameter for momentum) lives
in the optimizer and is exposed through :meth:`Optimizer.state`.
"""

from __future__ import annotations

import numpy as np

from .layers.base import Param


class Optimizer:
    """Base class: ``step()`` applies one update to every parameter with a gradient."""

    def __init__(self, params: list[Param], lr: float):
        self.params = list(params)
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        self.lr = float(lr)

    def step(self) -> None:
        for index, p in enumerate(self.params):
            if p.grad is None:
                raise RuntimeError(f"parameter {index} ({p.name}) has no gradient: run backward() before step()")
            self._update(index, p)

    def _update(self, index: int, p: Param) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, list[np.ndarray]]:
        """Per-parameter state arrays by name, in parameter order."""
        return {}


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (heavy-ball) momentum.

    ``v = momentum * v - lr * grad;  w += v``. With momentum 0 this is the
    plain ``w -= lr * grad``. The velocities ``v`` are the step cache: one
    array the size of each parameter.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9):
        super().__init__(params, lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.velocity = [np.zeros_like(p.value) for p in self.params] if momentum else []

    def _update(self, index, p):
        if not self.momentum:
            p.value -= self.lr * p.grad
            return
        v = self.velocity[index]
        v *= self.momentum
        v -= self.lr * p.grad
        p.value += v

    def state(self):
        return {"velocity": self.velocity} if self.momentum else {}
