"""The notation's vocabulary: layer keywords, their arguments and defaults.

Each layer class declares its own keyword (``Conv2D.keyword =
Keyword("CONV", ...)``, see :class:`volnet.layers.base.Keyword`); the table
here is built from the registered layer classes, and serves the parser
(which arguments a keyword takes and how they may be written), the builder
(types, ranges, defaults) and the writer (:func:`volnet.spec.to_notation`),
so the three cannot drift apart. What stays here is the notation's own
vocabulary: argument types, their aliases and the ``/S2`` modifiers.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields

from .. import shapes
from ..layers import LAYER_TYPES, Keyword  # importing volnet.layers registers every layer class

BASE_WIDTH = 32  # K of a bare CONV before the first POOL; doubles after each POOL
HIDDEN_FC = 512  # K of a bare FC that is not the last one
BARE_F = 3  # F of a bare CONV or LC
BARE_POOL = 2  # F (and S) of a bare POOL


@dataclass(frozen=True)
class Arg:
    """One argument: ``type`` is "int" (K), "pair" (an int or HxW pair: F, S, P, dilation),
    "float" (p, eps, momentum), "fit" (pad, crop or none) or "bool" (true/false or 1/0: bias);
    ``low`` is the smallest valid value."""

    name: str
    type: str
    low: float = 1


ARGS = {a.name: a for a in (
    Arg("K", "int"), Arg("F", "pair"), Arg("S", "pair"), Arg("P", "pair", 0), Arg("dilation", "pair"),
    Arg("fit", "fit"), Arg("bias", "bool", 0),
    Arg("p", "float", 0), Arg("eps", "float", 0), Arg("momentum", "float", 0),
    *(Arg(name, "int") for name in ("c1", "c3_reduce", "c3", "c5_reduce", "c5", "pool_proj")),
)}

# descriptive names accepted beside the notes' letters (STYLE.md: K, F, S, P = filters, size, stride, pad)
ARG_ALIASES = {"filters": "K", "size": "F", "stride": "S", "pad": "P", "padding": "P"}

# the letter after '/' in CONV3-64/S2/P1/D2/B0
MODIFIERS = {"S": "S", "P": "P", "D": "dilation", "B": "bias"}

FITS = tuple(f for f in shapes.FITS if f is not None)  # "pad", "crop"
BOOLS = {"true": True, "false": False}


def is_literal_word(arg: Arg, word: str) -> bool:
    """Whether a word written as the value of ``arg`` is a literal (``fit=pad``, ``bias=false``), not a letter."""
    return arg.type == "fit" or (arg.type == "bool" and word.lower() in BOOLS)


@dataclass(frozen=True)
class Kind(Keyword):
    """A layer keyword: the :class:`~volnet.layers.base.Keyword` a layer class declares (its fields are
    documented there), and ``layer``, the name of that class in :mod:`volnet.layers`."""

    layer: str = ""

    @classmethod
    def of(cls, layer_class) -> Kind:
        """The kind a layer class declares (its own ``keyword``, not one inherited)."""
        keyword: Keyword = layer_class.__dict__["keyword"]
        return cls(**{f.name: getattr(keyword, f.name) for f in fields(Keyword)}, layer=layer_class.__name__)

    def arg_name(self, written: str) -> str | None:
        """The canonical name of an argument written as ``written`` (case-insensitive), or None."""
        lowered = written.lower()
        lowered = ARG_ALIASES.get(lowered, lowered).lower()
        return next((a for a in self.args if a.lower() == lowered), None)

    @property
    def is_pool(self) -> bool:
        """Max, average and L2 pooling: each one doubles the K of later bare CONVs."""
        return self.pool


class _Table(Mapping):
    """A read-only table built from the layer classes registered so far (``LAYER_TYPES``): importing
    volnet.layers registers volnet's own, and a layer class defined later joins when it is defined."""

    def __init__(self, keys):
        self._keys, self._built, self._table = keys, -1, {}

    def _current(self) -> dict:
        if self._built != len(LAYER_TYPES):
            self._table = {key: kind for kind in kinds() for key in self._keys(kind)}
            self._built = len(LAYER_TYPES)
        return self._table

    def __getitem__(self, key):
        return self._current()[key]

    def __iter__(self):
        return iter(self._current())

    def __len__(self):
        return len(self._current())


def kinds() -> tuple[Kind, ...]:
    """Every registered layer class that declares a keyword, as a :class:`Kind`."""
    return tuple(Kind.of(cls) for cls in LAYER_TYPES.values() if cls.__dict__.get("keyword") is not None)

INPUT = "INPUT"
KEYWORDS: Mapping[str, Kind] = _Table(lambda kind: (kind.name, *kind.aliases))  # every spelling -> its kind
BY_LAYER: Mapping[str, Kind] = _Table(lambda kind: (kind.layer,))  # layer class name -> its kind


def closest_keyword(word: str) -> str | None:
    """The known keyword nearest to ``word`` (difflib), for 'did you mean' hints."""
    matches = difflib.get_close_matches(word.upper(), [*KEYWORDS, INPUT], n=1, cutoff=0.5)
    return matches[0] if matches else None


def closest_arg(written: str, kind: Kind) -> str | None:
    """The argument of ``kind`` nearest to ``written``, for 'did you mean' hints."""
    names = {**{a.lower(): a for a in kind.args}, **{k: v for k, v in ARG_ALIASES.items() if v in kind.args}}
    matches = difflib.get_close_matches(written.lower(), names, n=1, cutoff=0.5)
    return names[matches[0]] if matches else None
