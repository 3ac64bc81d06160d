"""The optimizer base class: gradient checks, weight decay, per-parameter state.

An optimizer receives the list of :class:`~volnet.layers.Param` once and
knows nothing about layers. Each update rule is one method,
``_update(w, g, *state)``, that changes the weights ``w`` and its own state
arrays in place; everything else (checking the gradients, adding weight
decay, counting steps, saving and loading the state) lives here.

The state arrays are the "step cache" the notes count in memory: one array
the size of each parameter per name in :attr:`Optimizer.state_names` (the
*cache multiplier*: 0 for plain SGD, 1 for momentum, Nesterov, Adagrad and
RMSProp, 2 for Adam).
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from ..layers.base import Param


def check_hyperparameter(name: str, value, ok: bool, requirement: str) -> float:
    """``float(value)`` if ``ok``, else a ValueError saying what ``name`` must be."""
    if not ok:
        raise ValueError(f"{name} must be {requirement}, got {value!r}")
    return float(value)


def check_learning_rate(lr) -> float:
    """``float(lr)`` for a finite rate > 0; a ValueError for 0, negative, NaN or Inf rates."""
    return check_hyperparameter("learning rate", lr, lr > 0 and math.isfinite(lr), "a finite number > 0")


def constructor_config(obj) -> dict:
    """Every constructor argument of ``obj`` (but ``params``), read back from its attributes."""
    names = [n for n in inspect.signature(type(obj).__init__).parameters if n not in ("self", "params")]
    return {"name": obj.name, **{n: getattr(obj, n) for n in names}}


def constructor_repr(obj) -> str:
    """``Name(arg=value, ...)`` showing only the arguments that differ from their defaults."""
    defaults = {n: p.default for n, p in inspect.signature(type(obj).__init__).parameters.items()}
    config = {k: v for k, v in obj.get_config().items() if k != "name"}
    args = ", ".join(f"{k}={v!r}" for k, v in config.items() if defaults.get(k, object()) != v)
    return f"{type(obj).__name__}({args})"


class Optimizer:
    """Base class: ``step()`` applies one update to every parameter.

    Weight decay is L2 regularisation added to the gradient, as torch.optim
    does it: the rule sees ``g = grad + weight_decay * w`` (``p.grad`` itself
    is left unchanged). For Adam this is *not* AdamW's decoupled decay.

    Subclasses set ``name`` (the :func:`make_optimizer` name), ``state_names``
    and implement ``_update(w, g, *state)``.
    """

    name: str = ""
    state_names: tuple[str, ...] = ()

    def __init__(self, params: list[Param], lr: float, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr = check_learning_rate(lr)
        self.weight_decay = check_hyperparameter("weight_decay", weight_decay, weight_decay >= 0, ">= 0")
        self.steps = 0  # updates applied so far (Adam's bias correction uses it)
        self._state = {name: [np.zeros_like(p.value) for p in self.params] for name in self.state_names}

    @property
    def cache_multiplier(self) -> int:
        """Arrays of per-parameter state kept per parameter array."""
        return len(self.state_names)

    def step(self) -> None:
        """Update every parameter from its gradient; all gradients are checked before any weight changes."""
        for index, p in enumerate(self.params):
            if p.grad is None:
                raise RuntimeError(f"parameter {index} ({p.name}) has no gradient: run backward() before step()")
            if p.grad.shape != p.value.shape:
                raise ValueError(f"parameter {index} ({p.name}): gradient of shape {p.grad.shape} "
                                 f"for a value of shape {p.value.shape}")
        self.steps += 1
        for index, p in enumerate(self.params):
            g = p.grad + self.weight_decay * p.value if self.weight_decay else p.grad
            self._update(p.value, g, *(self._state[name][index] for name in self.state_names))

    def _update(self, w: np.ndarray, g: np.ndarray, *state: np.ndarray) -> None:
        raise NotImplementedError

    # -- state ------------------------------------------------------------
    def state(self) -> dict[str, list[np.ndarray]]:
        """The live per-parameter state arrays by name, each list in parameter order."""
        return {name: list(arrays) for name, arrays in self._state.items()}

    def state_dict(self) -> dict:
        """Everything needed to resume exactly, arrays apart from scalars.

        ``{"arrays": {name: [one copy per parameter]}, "scalars": {"steps": int, "lr": float}}``.
        ``lr`` is saved because a schedule (or the user) may have changed it
        since construction; the other hyperparameters are in :meth:`get_config`.
        """
        return {"arrays": {name: [a.copy() for a in arrays] for name, arrays in self._state.items()},
                "scalars": {"steps": self.steps, "lr": self.lr}}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; checks everything before changing anything.

        Raises:
            ValueError: if the state names, the number of parameters or any shape differ.
        """
        arrays, scalars = state.get("arrays", {}), state.get("scalars", {})
        if set(arrays) != set(self.state_names):
            raise ValueError(f"{type(self).__name__} keeps state {sorted(self.state_names)} "
                             f"but the loaded state has {sorted(arrays)}")
        for key in ("steps", "lr"):
            if key not in scalars:
                raise ValueError(f"the loaded state has no scalar {key!r} (has {sorted(scalars)})")
        for name in self.state_names:
            if len(arrays[name]) != len(self.params):
                raise ValueError(f"the loaded state {name!r} has {len(arrays[name])} arrays "
                                 f"but the optimizer has {len(self.params)} parameters")
            for index, (p, a) in enumerate(zip(self.params, arrays[name])):
                if np.shape(a) != p.value.shape:
                    raise ValueError(f"parameter {index} ({p.name}): loaded state {name!r} has shape "
                                     f"{np.shape(a)} but the parameter has shape {p.value.shape}")
        for name in self.state_names:
            for target, a in zip(self._state[name], arrays[name]):
                target[...] = a
        self.steps, self.lr = int(scalars["steps"]), float(scalars["lr"])

    # -- config -----------------------------------------------------------
    def get_config(self) -> dict:
        """``{"name": ..., **constructor arguments}``: ``optimizer_from_config(params, config)`` rebuilds it."""
        return constructor_config(self)

    def __repr__(self) -> str:
        return constructor_repr(self)
