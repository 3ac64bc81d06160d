"""The update rules: SGD (plain, momentum, Nesterov), Adagrad, RMSProp, Adam.

Notation: ``w`` a parameter array, ``g`` its gradient (plus
``weight_decay * w``), ``lr`` the learning rate, ``t`` the number of steps
taken including this one. Every rule is written exactly as torch.optim
computes it, so the two agree to rounding for any sequence of gradients and
learning rates.
"""

from __future__ import annotations

import math

import numpy as np

from ..ops import sgd
from .base import Optimizer, check_hyperparameter


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum or Nesterov momentum.

    ``v = momentum * v + g``, then ``w -= lr * v`` (heavy ball) or
    ``w -= lr * (g + momentum * v)`` (Nesterov). With momentum 0 this is the
    plain ``w -= lr * g`` and no state is kept.

    This is torch's formulation. The notes (CS231n) write
    ``v = momentum * v - lr * g; w += v``, which gives the same weights while
    ``lr`` is constant, but when a schedule changes ``lr`` their velocity still
    carries the old learning rates, while here the new ``lr`` scales the whole
    velocity at once. The notes' Nesterov form
    ``w += -momentum * v_prev + (1 + momentum) * v`` is likewise the constant-``lr``
    equivalent of the one here.

    Args:
        lr: learning rate. Default: 0.01
        momentum: in [0, 1). Default: 0.9
        nesterov: use Nesterov momentum (needs momentum > 0). Default: False
        weight_decay: L2 penalty added to the gradient. Default: 0

    State: ``velocity`` (one array per parameter) when momentum > 0.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.momentum = check_hyperparameter("momentum", momentum, 0 <= momentum < 1, "in [0, 1)")
        if nesterov and not momentum:
            raise ValueError("Nesterov momentum needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)
        self.state_names = ("velocity",) if self.momentum else ()
        super().__init__(params, lr, weight_decay)

    @property
    def name(self) -> str:
        return "nesterov" if self.nesterov else "momentum" if self.momentum else "sgd"

    def _update(self, w, g, *velocity):
        if not self.momentum:
            w -= self.lr * g
            return
        (v,) = velocity
        if sgd.applies(w, g, v):  # one compiled pass, the same numbers
            sgd.momentum_step(w, g, v, self.lr, self.momentum, self.nesterov)
            return
        v *= self.momentum
        v += g
        w -= self.lr * (g + self.momentum * v if self.nesterov else v)


class Adagrad(Optimizer):
    """Per-element step sizes shrinking with the summed squared gradients.

    ``s += g * g;  w -= lr * g / (sqrt(s) + eps)``.

    Args:
        lr: learning rate. Default: 0.01
        eps: added to the denominator. Default: 1e-10 (as torch)
        weight_decay: L2 penalty added to the gradient. Default: 0

    State: ``sum_sq`` (the running sum ``s``).
    """

    name = "adagrad"
    state_names = ("sum_sq",)

    def __init__(self, params, lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0):
        self.eps = check_hyperparameter("eps", eps, eps > 0, "> 0")
        super().__init__(params, lr, weight_decay)

    def _update(self, w, g, s):
        s += g * g
        w -= self.lr * g / (np.sqrt(s) + self.eps)


class RMSProp(Optimizer):
    """Adagrad with a leaky (exponentially decaying) sum of squared gradients.

    ``s = decay_rate * s + (1 - decay_rate) * g * g;  w -= lr * g / (sqrt(s) + eps)``.

    Args:
        lr: learning rate. Default: 0.01
        decay_rate: in [0, 1) (torch calls it ``alpha``). Default: 0.99
        eps: added to the denominator. Default: 1e-8
        weight_decay: L2 penalty added to the gradient. Default: 0

    State: ``square_avg`` (the running average ``s``).
    """

    name = "rmsprop"
    state_names = ("square_avg",)

    def __init__(self, params, lr: float = 0.01, decay_rate: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.decay_rate = check_hyperparameter("decay_rate", decay_rate, 0 <= decay_rate < 1, "in [0, 1)")
        self.eps = check_hyperparameter("eps", eps, eps > 0, "> 0")
        super().__init__(params, lr, weight_decay)

    def _update(self, w, g, s):
        s *= self.decay_rate
        s += (1 - self.decay_rate) * g * g
        w -= self.lr * g / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """RMSProp with momentum, both averages corrected for their zero start.

    ``m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g * g``, then
    ``w -= lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)``.

    Args:
        lr: learning rate. Default: 0.001
        betas: ``(b1, b2)``, each in [0, 1). Default: (0.9, 0.999)
        eps: added to the denominator. Default: 1e-8
        weight_decay: L2 penalty added to the gradient (not AdamW's decoupled decay). Default: 0

    State: ``m`` and ``v`` per parameter, and the step count ``t`` (a scalar).
    """

    name = "adam"
    state_names = ("m", "v")

    def __init__(self, params, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (b1, b2), got {betas!r}")
        self.betas = tuple(check_hyperparameter(f"betas[{i}]", b, 0 <= b < 1, "in [0, 1)")
                           for i, b in enumerate(betas))
        self.eps = check_hyperparameter("eps", eps, eps > 0, "> 0")
        super().__init__(params, lr, weight_decay)

    def _update(self, w, g, m, v):
        (b1, b2), t = self.betas, self.steps
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        # Python floats for the corrections (a NumPy float64 scalar would turn float32 math into
        # float64), and two work arrays updated in place.
        denominator = np.sqrt(v)
        denominator *= 1 / math.sqrt(1 - b2**t)
        denominator += self.eps
        step = m * (self.lr / (1 - b1**t))
        step /= denominator
        w -= step


# name -> (class, the arguments that name fixes)
OPTIMIZERS: dict[str, tuple[type[Optimizer], dict]] = {
    "sgd": (SGD, {"momentum": 0.0, "nesterov": False}),
    "momentum": (SGD, {"nesterov": False}),
    "nesterov": (SGD, {"nesterov": True}),
    "adagrad": (Adagrad, {}),
    "rmsprop": (RMSProp, {}),
    "adam": (Adam, {}),
}


def make_optimizer(name: str, params, **kwargs) -> Optimizer:
    """Build an optimizer by name: ``make_optimizer("adam", net.params(), lr=1e-3)``.

    Raises:
        ValueError: for an unknown name, or an argument the name fixes
            (``momentum`` for "sgd", ``nesterov`` for "momentum" and "nesterov").
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    cls, fixed = OPTIMIZERS[name]
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"optimizer {name!r} means {key}={value!r}, got {key}={kwargs[key]!r}")
    return cls(params, **{**kwargs, **fixed})


def optimizer_from_config(params, config: dict) -> Optimizer:
    """Rebuild an optimizer from its :meth:`~Optimizer.get_config`."""
    return make_optimizer(config["name"], params, **{k: v for k, v in config.items() if k != "name"})


def cache_multiplier(name: str, **kwargs) -> int:
    """Per-parameter state arrays the named optimizer keeps: sgd 0, momentum/nesterov/adagrad/rmsprop 1, adam 2."""
    return make_optimizer(name, [], **kwargs).cache_multiplier
