"""Memos of what follows from a layer's shapes alone: its plan (:mod:`volnet.ops.conv_plan`) and its prepared
forward step (the kernel, geometry and split chosen; :func:`volnet.ops.conv.conv_forward`,
:func:`volnet.ops.pool.pool_forward`, :func:`volnet.ops.dense.fc_forward`). A layer asks for the same ones on every call, and at batch 1 working them
out again took most of a forward pass. The rules they follow are module constants a test may change; it then
forgets every memo (:func:`forget`, tests/conftest.py)."""

from __future__ import annotations

import functools

_REMEMBERED: list = []  # every memo remembered() made


def remembered(function):
    """``functools.lru_cache`` (hashable arguments: shapes, dtypes, hyperparameters, a Workers), registered so
    that :func:`forget` clears it."""
    cached = functools.lru_cache(maxsize=1024)(function)
    _REMEMBERED.append(cached)
    return cached


def forget() -> None:
    """Forget every memo: after a change to a rule they followed."""
    for cached in _REMEMBERED:
        cached.cache_clear()


def hashable(value):
    """A hyperparameter as a memo's key: a list (``F=[3, 2]``) as a tuple."""
    return tuple(value) if isinstance(value, list) else value
