"""The assignment's functions that ``volnet check`` recognises, how to call them, and what they must return.

The contracts (NCHW, as the assignment writes them):

* ``affine_forward(x, w, b) -> (out, cache)``, x ``(N, d_1, ..., d_k)``
  flattened per image, w ``(D, M)``; ``affine_backward(dout, cache) -> (dx, dw, db)``
* ``relu_forward(x) -> (out, cache)``; ``relu_backward(dout, cache) -> dx``
* ``conv_forward_naive(x, w, b, conv_param) -> (out, cache)``, x ``(N, C, H, W)``,
  w ``(F, C, HH, WW)``, ``conv_param = {'stride': S, 'pad': P}``;
  ``conv_backward_naive(dout, cache) -> (dx, dw, db)``
* ``max_pool_forward_naive(x, pool_param) -> (out, cache)`` with
  ``{'pool_height', 'pool_width', 'stride'}``; ``max_pool_backward_naive(dout, cache) -> dx``
* ``softmax_loss(x, y) -> (loss, dx)``, ``svm_loss(x, y) -> (loss, dx)``
* the ``_fast`` variants of the conv and pool functions, same contracts.

Or volnet's own kernel signatures (:mod:`volnet.ops`, NHWC, weights
``(HH, WW, C, F)``), for people who rewrite volnet's kernels:
``conv_forward_naive(x, w, b, stride, pad)``, ``conv_forward``,
``pool_forward_naive(x, F, S)``, ``pool_forward``, ``fc_forward``,
``relu_forward`` and their backwards, ``softmax_cross_entropy``,
``svm_hinge`` (:data:`APIS`, :func:`detect`). They are called in their layout
and compared there; the reference and the mistakes are worked out in NCHW
(:func:`to_learner` moves a quantity between the two).

A backward is checked through its own forward, whose cache it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import reference


@dataclass(frozen=True)
class Spec:
    """One recognised function: its family (which reference and configurations), kind and results."""

    name: str
    family: str
    kind: str  # "forward" -> (out, cache); "backward" -> gradients; "loss" -> (loss, dx)
    quantities: tuple[str, ...]
    forward: str | None = None  # the forward whose cache a backward takes
    api: str = "assignment"  # or "volnet": volnet.ops's signatures, NHWC


def _layer(api: str, family: str, forward: str, backward: str, grads: tuple[str, ...]) -> list[Spec]:
    return [Spec(forward, family, "forward", ("out",), api=api),
            Spec(backward, family, "backward", grads, forward, api=api)]


def _specs(api: str, names: dict) -> dict:
    """``names``: family -> (forward, backward) of a layer, or the loss's name."""
    specs = []
    for family, name in names.items():
        for pair in (name if isinstance(name, list) else [name]):
            if isinstance(pair, tuple):
                grads = ("dx",) if family in ("relu", "pool") else ("dx", "dw", "db")
                specs += _layer(api, family, *pair, grads)
            else:
                specs.append(Spec(pair, family, "loss", ("loss", "dx"), api=api))
    return {spec.name: spec for spec in specs}


APIS = {
    "assignment": _specs("assignment", {
        "affine": ("affine_forward", "affine_backward"), "relu": ("relu_forward", "relu_backward"),
        "conv": [("conv_forward_naive", "conv_backward_naive"), ("conv_forward_fast", "conv_backward_fast")],
        "pool": [("max_pool_forward_naive", "max_pool_backward_naive"),
                 ("max_pool_forward_fast", "max_pool_backward_fast")],
        "softmax": "softmax_loss", "svm": "svm_loss"}),
    "volnet": _specs("volnet", {
        "affine": ("fc_forward", "fc_backward"), "relu": ("relu_forward", "relu_backward"),
        "conv": [("conv_forward_naive", "conv_backward_naive"), ("conv_forward", "conv_backward")],
        "pool": [("pool_forward_naive", "pool_backward_naive"), ("pool_forward", "pool_backward")],
        "softmax": "softmax_cross_entropy", "svm": "svm_hinge"}),
}
SPECS = APIS["assignment"]
NAMES = tuple(SPECS)
VOLNET_NAMES = tuple(APIS["volnet"])


def detect(module) -> str:
    """``"volnet"`` when the module defines a name only volnet's API has, or a conv_forward_naive taking
    ``stride``; else ``"assignment"``."""
    import inspect

    if any(hasattr(module, name) for name in set(VOLNET_NAMES) - set(NAMES)):
        return "volnet"
    try:
        return "volnet" if "stride" in inspect.signature(module.conv_forward_naive).parameters else "assignment"
    except (AttributeError, TypeError, ValueError):
        return "assignment"


# Where a quantity's axes go between NCHW and volnet's NHWC (CONV weights (F, C, HH, WW) -> (HH, WW, C, F)).
_NHWC = {"out": (0, 2, 3, 1), "dx": (0, 2, 3, 1), "dw": (2, 3, 1, 0)}


def to_learner(spec: Spec, quantity: str, value, back: bool = False):
    """A quantity moved from NCHW into the learner's layout (``back``: out of it); as it is where nothing moves."""
    axes = _NHWC.get(quantity) if spec.api == "volnet" and spec.family in ("conv", "pool") else None
    if axes is None or np.ndim(value) != 4:
        return value
    return np.transpose(value, np.argsort(axes) if back else axes)


def shown(spec: Spec, config: dict) -> dict:
    """A configuration in the learner's own parameter names and layout (no seed)."""
    shown = {key: value for key, value in config.items() if key != "seed"}
    if spec.api != "volnet" or spec.family not in ("conv", "pool"):
        return shown
    N, C, H, W = config["x_shape"]
    if spec.family == "conv":
        F, _, HH, WW = config["w_shape"]
        return {"x_shape": [N, H, W, C], "w_shape": [HH, WW, C, F], "stride": config["stride"], "pad": config["pad"]}
    return {"x_shape": [N, H, W, C], "F": _window(config), "S": config["stride"]}


def _window(config: dict):
    ph, pw = config["pool_height"], config["pool_width"]
    return ph if ph == pw else [ph, pw]

# The notes' formula for each quantity, in the assignment's names.
FORMULAS = {
    ("affine", "out"): "out = x.reshape(N, -1) @ w + b",
    ("affine", "dx"): "dx = (dout @ w.T).reshape(x.shape)",
    ("affine", "dw"): "dw = x.reshape(N, -1).T @ dout  (a sum over the batch)",
    ("affine", "db"): "db = dout.sum(axis=0)  (a sum over the batch)",
    ("relu", "out"): "out = max(0, x)",
    ("relu", "dx"): "dx = dout * (x > 0)",
    ("conv", "out"): "out[n, f, i, j] = sum(x_pad[n, :, i*stride : i*stride+HH, j*stride : j*stride+WW] * w[f]) + b[f]"
                     ", with H' = 1 + (H + 2*pad - HH) / stride",
    ("conv", "dx"): "dx_pad[n, :, i*stride : i*stride+HH, j*stride : j*stride+WW] += w[f] * dout[n, f, i, j]; "
                    "dx = dx_pad[:, :, pad:pad+H, pad:pad+W]",
    ("conv", "dw"): "dw[f] += x_pad[n, :, i*stride : i*stride+HH, j*stride : j*stride+WW] * dout[n, f, i, j], "
                    "summed over n, i, j (one filter shared by every position)",
    ("conv", "db"): "db[f] = sum of dout[n, f, i, j] over n, i, j",
    ("pool", "out"): "out[n, c, i, j] = max(x[n, c, i*stride : i*stride+pool_height, j*stride : j*stride+pool_width])"
                     ", with H' = 1 + (H - pool_height) / stride",
    ("pool", "dx"): "dx[n, c, where window (i, j) had its max] += dout[n, c, i, j]  (the switches route the gradient; "
                    "overlapping windows add up)",
    ("softmax", "loss"): "loss = mean over n of -log(exp(x[n, y[n]]) / sum_j exp(x[n, j]))",
    ("softmax", "dx"): "dx[n] = (softmax(x[n]) - onehot(y[n])) / N",
    ("svm", "loss"): "loss = mean over n of sum over j != y[n] of max(0, x[n, j] - x[n, y[n]] + 1)",
    ("svm", "dx"): "dx[n, j] = (x[n, j] - x[n, y[n]] + 1 > 0) / N for j != y[n]; "
                   "dx[n, y[n]] = -(number of positive margins in row n) / N",
}

# The same in volnet's names and NHWC layout, where they differ (volnet.ops's docstrings).
VOLNET_FORMULAS = {
    ("conv", "out"): "out[n, i, j, k] = np.sum(xp[n, i*S : i*S+F, j*S : j*S+F, :] * w[:, :, :, k]) + b[k], "
                     "with H2 = (H - F + 2P)/S + 1",
    ("conv", "dx"): "dxp[n, i*S : i*S+F, j*S : j*S+F, :] += w[:, :, :, k] * dout[n, i, j, k]; "
                    "dx = dxp[:, P:P+H, P:P+W, :]",
    ("conv", "dw"): "dw[:, :, :, k] += xp[n, i*S : i*S+F, j*S : j*S+F, :] * dout[n, i, j, k], summed over n, i, j",
    ("conv", "db"): "db[k] = dout[..., k].sum()",
    ("pool", "out"): "out[n, i, j, d] = max(x[n, i*S : i*S+F, j*S : j*S+F, d]), with H2 = (H - F)/S + 1",
    ("pool", "dx"): "dx[n, where window (i, j) had its max, d] += dout[n, i, j, d]  (the switches route the "
                    "gradient; overlapping windows add up)",
}


def formula(spec: Spec, quantity: str) -> str:
    """The notes' formula for a quantity, in the learner's API's names."""
    if spec.api == "volnet" and (spec.family, quantity) in VOLNET_FORMULAS:
        return VOLNET_FORMULAS[spec.family, quantity]
    return FORMULAS[spec.family, quantity]


class ReturnError(Exception):
    """The learner's function returned something of the wrong form (not the contract's tuple)."""


def param(family: str, config: dict) -> dict:
    """The assignment's parameter dict of a configuration (conv_param or pool_param), or {}."""
    keys = {"conv": ("stride", "pad"), "pool": ("pool_height", "pool_width", "stride")}.get(family, ())
    return {key: config[key] for key in keys}


def expected(family: str, config: dict, inputs: dict) -> dict:
    """volnet's answer for every quantity of the configuration (dx, dw, db when inputs hold dout)."""
    x, dout = inputs["x"], inputs.get("dout")
    if family == "conv":
        return reference.conv(x, inputs["w"], inputs["b"], config["stride"], config["pad"], dout)
    if family == "pool":
        return reference.max_pool(x, config["pool_height"], config["pool_width"], config["stride"], dout)
    if family == "affine":
        return reference.affine(x, inputs["w"], inputs["b"], dout)
    if family == "relu":
        return reference.relu(x, dout)
    return (reference.softmax_loss if family == "softmax" else reference.svm_loss)(x, inputs["y"])


def with_dout(spec: Spec, config: dict, inputs: dict) -> dict:
    """The inputs, plus an upstream gradient dout in the output's shape for a backward."""
    if spec.kind != "backward":
        return inputs
    shape = expected(spec.family, config, inputs)["out"].shape
    return {**inputs, "dout": np.random.default_rng(config["seed"] + 1).standard_normal(shape)}


def call(spec: Spec, functions: dict, config: dict, inputs: dict) -> dict:
    """Run the learner's function (and the forward a backward needs) on copies of the inputs, in its layout;
    its results by name, as it returned them."""
    fresh = {key: np.ascontiguousarray(to_learner(spec, {"x": "dx", "w": "dw", "dout": "dx"}.get(key, key), value))
             for key, value in inputs.items()}
    if spec.kind == "loss":
        return _unpack(spec.name, functions[spec.name](fresh["x"], fresh["y"]), ("loss", "dx"))
    forward = functions[spec.forward or spec.name]
    args, options = [fresh["x"]] + [fresh[k] for k in ("w", "b") if k in fresh], {}
    if spec.family in ("conv", "pool") and spec.api == "volnet":
        options = ({"stride": config["stride"], "pad": config["pad"]} if spec.family == "conv" else
                   {"F": _window(config), "S": config["stride"]})
    elif spec.family in ("conv", "pool"):
        args.append(param(spec.family, config))
    out, cache = _unpack(spec.forward or spec.name, forward(*args, **options), ("out", "cache")).values()
    if spec.kind == "forward":
        return {"out": out}
    grads = functions[spec.name](fresh["dout"], cache)
    if len(spec.quantities) == 1:
        if isinstance(grads, tuple):
            raise ReturnError(f"{spec.name} should return dx alone, got a tuple of {len(grads)}")
        return {"dx": grads}
    return _unpack(spec.name, grads, spec.quantities)


def _unpack(name: str, result, names: tuple[str, ...]) -> dict:
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = f"a tuple of {len(result)}" if isinstance(result, (tuple, list)) else type(result).__name__
        raise ReturnError(f"{name} should return ({', '.join(names)}), got {got}")
    return dict(zip(names, result))


def compare(quantity: str, got, want) -> dict | None:
    """None when ``got`` matches ``want`` (float64, to 1e-6 relative), else the failure's fields."""
    failure = dict(quantity=quantity, index=None, expected=None, got=None, max_abs_error=None)
    if got is None:
        return {**failure, "message": f"{quantity} is None (not written yet?)"}
    try:
        value = np.asarray(got)
        if value.dtype == object or not np.issubdtype(value.dtype, np.number):
            raise TypeError
    except (TypeError, ValueError):
        return {**failure, "message": f"{quantity} should be a number array, got {type(got).__name__}"}
    want = np.asarray(want)
    if value.shape != want.shape:
        return {**failure, "expected": list(want.shape), "got": list(value.shape),
                "message": f"{quantity} has shape {tuple(value.shape)}, expected {tuple(want.shape)}"}
    if value.dtype != want.dtype:
        return {**failure, "expected": str(want.dtype), "got": str(value.dtype),
                "message": f"{quantity} has dtype {value.dtype}, expected {want.dtype} like the inputs "
                           "(create arrays with np.zeros_like(x) or dtype=x.dtype)"}
    error = np.abs(value.astype(np.float64) - want)
    bad = ~np.isfinite(value) | (error > 1e-8 + 1e-6 * np.abs(want))
    if not bad.any():
        return None
    flat = int(np.argmax(np.where(np.isfinite(error), error, np.inf)))
    index = [int(i) for i in np.unravel_index(flat, want.shape)] if want.ndim else []
    at = tuple(index)
    where = f" at {list(index)}" if index else ""
    return {**failure, "index": index, "expected": float(want[at]), "got": float(value[at]),
            "max_abs_error": float(error[at]),
            "message": f"{quantity} differs{where}: expected {float(want[at]):.6g}, got {float(value[at]):.6g}"
                       f" ({int(bad.sum())} of {bad.size} values wrong)"}
