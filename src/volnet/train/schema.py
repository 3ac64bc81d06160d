"""The language a checkpoint's header is checked in: a table of fields, each with what it must be.

A table of fields rather than a JSON Schema: the checks that are not types
(a generator state NumPy takes back, an optimizer config that rebuilds) are
Python calls either way, the messages should use our field names, and an
install that only evaluates a model need not carry jsonschema and its
dependencies for a few dozen fields.

A schema is a :class:`Check` (a test, and what it asks for in words), a
:class:`Rebuilds` (a config that a constructor must accept), an :class:`Obj`
(required and optional fields), a :class:`ListOf`, a :class:`MapOf`, a
:class:`Nullable`, or a tuple of schemas that must all hold. :func:`validate`
raises :class:`Mismatch` at the first field that breaks it, naming the field
by its dotted path (``position.epoch``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

# What a constructor raises for a config it cannot use (wrong keys or types, values out of range, too big).
BAD_CONFIG = (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError,
              MemoryError)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the network it is loaded into."""


@dataclass(frozen=True)
class Check:
    """A value that passes ``test``; ``requirement`` says what in words, for the error message."""

    requirement: str
    test: Callable[[Any], bool]


@dataclass(frozen=True)
class Rebuilds:
    """A config that ``build`` turns into ``what``; the builder's own error says what is wrong."""

    what: str
    build: Callable[[Any], object]


@dataclass(frozen=True)
class Obj:
    """A JSON object with ``required`` and ``optional`` fields (name -> schema); other fields are ignored."""

    required: dict
    optional: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    """A JSON object with free keys (``rng.layers``) whose values all follow ``value``."""

    value: Any


@dataclass(frozen=True)
class Nullable:
    schema: Any


# A tuple of schemas means all of them, in order: the types first, then the rebuild.


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def one_of(*choices: str) -> Check:
    return Check("one of " + ", ".join(map(repr, choices)), lambda v: isinstance(v, str) and v in choices)


COUNT = Check("a non-negative integer", lambda v: is_int(v) and v >= 0)
POSITIVE = Check("a positive integer", lambda v: is_int(v) and v > 0)
NUMBER = Check("a finite number", is_number)
NON_NEGATIVE = Check("a finite number >= 0", lambda v: is_number(v) and v >= 0)
POSITIVE_NUMBER = Check("a finite number > 0", lambda v: is_number(v) and v > 0)
FRACTION = Check("a number in [0, 1]", lambda v: is_number(v) and 0 <= v <= 1)
VAL_SPLIT = Check("a number in [0, 1)", lambda v: is_number(v) and 0 <= v < 1)
TEXT = Check("a string", lambda v: isinstance(v, str))
FLAG = Check("true or false", lambda v: isinstance(v, bool))
VOLUME = Check("a volume [H, W, D] of positive integers",
               lambda v: isinstance(v, list) and len(v) == 3 and all(POSITIVE.test(s) for s in v))
SIZE = Check("a list of 1 to 3 positive integers",
             lambda v: isinstance(v, list) and 1 <= len(v) <= 3 and all(POSITIVE.test(s) for s in v))


class Mismatch(Exception):
    """Where the header breaks the schema: the dotted ``field`` and what is wrong with it."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"field {field_name!r} {problem}")


def show(value) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def reason(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"missing {error.args[0]!r}" if error.args else "a missing field"
    return str(error) or type(error).__name__


def join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def validate(value, schema, name: str = "") -> None:
    """Raise :class:`Mismatch` at the first field of ``value`` that breaks ``schema``."""
    if isinstance(schema, tuple):
        for part in schema:
            validate(value, part, name)
    elif isinstance(schema, Nullable):
        if value is not None:
            validate(value, schema.schema, name)
    elif isinstance(schema, Check):
        if not schema.test(value):
            raise Mismatch(name, f"must be {schema.requirement}, got {show(value)}")
    elif isinstance(schema, Rebuilds):
        try:
            schema.build(value)
        except BAD_CONFIG as error:
            raise Mismatch(name, f"does not rebuild {schema.what}: {reason(error)}") from None
    elif isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise Mismatch(name, f"must be a list, got {show(value)}")
        for i, item in enumerate(value):
            validate(item, schema.item, f"{name}[{i}]")
    elif not isinstance(value, dict):  # Obj and MapOf are JSON objects
        raise Mismatch(name, f"must be an object, got {show(value)}")
    elif isinstance(schema, MapOf):
        for key, item in value.items():
            validate(item, schema.value, join(name, key))
    else:
        for key, sub in {**schema.required, **schema.optional}.items():
            if key in value:
                validate(value[key], sub, join(name, key))
            elif key in schema.required:
                raise Mismatch(join(name, key), "is missing")
