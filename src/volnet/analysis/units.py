"""Units: bytes per value of a dtype, memory budgets ("12GB", "1.5GiB"), bytes as text, optimizer state.

Bytes everywhere; text shows binary units first (MiB = 2**20 bytes, GiB =
2**30), as the notes divide by 1024, with decimal ones (MB = 10**6, GB =
10**9) beside them. Budgets are parsed the same way: ``"12GB"`` is
12 * 10**9 bytes, ``"12GiB"`` is 12 * 2**30.

>>> parse_budget("1.5GiB"), format_bytes(60_950_432)
(1610612736, '58.1 MiB (61.0 MB)')
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..resources import format_bytes  # noqa: F401 - the units of this package, defined below it

DTYPE_BYTES = {"float16": 2, "float32": 4, "float64": 8}


def bytes_per_value(dtype) -> int:
    """4 for ``"float32"``, 8 for float64, 2 for float16; any NumPy dtype by its itemsize."""
    name = dtype_name(dtype)
    if name in DTYPE_BYTES:
        return DTYPE_BYTES[name]
    return np.dtype(dtype).itemsize


def dtype_name(dtype) -> str:
    """``"float32"`` for ``"float32"``, ``np.float32`` or ``np.dtype("float32")``."""
    return getattr(dtype, "name", None) or (dtype if isinstance(dtype, str) else getattr(dtype, "__name__", str(dtype)))


def cache_multiplier(optimizer: str | None) -> int:
    """Per-parameter state arrays of the named optimizer (``volnet.optim.cache_multiplier``); None: 0.

    Raises:
        ValueError: for an unknown optimizer name.
    """
    if optimizer is None:
        return 0
    from ..optim import cache_multiplier as multiplier

    return multiplier(optimizer)


def step_temporaries(optimizer: str | None, itemsize: int) -> int:
    """Bytes per value of one parameter array that ``volnet.optim``'s update allocates at once.

    sgd and momentum: ``lr * v`` (one array); nesterov: ``momentum * v`` and
    ``lr * (...)`` (two); adagrad and rmsprop: ``lr * g``, ``sqrt(s)`` and
    ``sqrt(s) + eps`` (three); adam: the denominator ``sqrt(v)/c + eps`` and
    the step ``m * lr/(1 - b1**t)``, both updated in place (two).
    """
    return {"sgd": 1, "momentum": 1, "nesterov": 2, "adagrad": 3, "rmsprop": 3, "adam": 2}.get(
        optimizer or "sgd", 3) * itemsize


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_budget(budget) -> int:
    """Bytes from ``"12GB"`` (10**9 each), ``"1.5GiB"`` (2**30 each), ``"512MB"``, ``"64KiB"`` or an int.

    Units are case-insensitive: B, KB, MB, GB, TB (powers of 1000) and
    KiB, MiB, GiB, TiB (powers of 1024). A GPU sold as "12 GB" usually has
    12 GiB: write ``"12GiB"`` for that.

    Raises:
        ValueError: for anything else (a negative number, an unknown unit, a bool).
    """
    if isinstance(budget, bool):
        raise ValueError(f"memory budget must be bytes or a string like '12GB', got {budget!r}")
    if isinstance(budget, (int, float)):
        if not budget >= 0 or math.isinf(budget):
            raise ValueError(f"memory budget must be a non-negative number of bytes, got {budget!r}")
        return int(budget)
    match = _BUDGET.match(budget) if isinstance(budget, str) else None
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read the memory budget {budget!r}: write bytes (an int) or a number with a "
                         "unit, e.g. '12GB' (10**9 bytes each), '1.5GiB' (2**30), '512MB', '800MiB'")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
