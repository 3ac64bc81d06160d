"""Size arithmetic for activation volumes: the notes' ``(W - F + 2P)/S + 1``.

Every kernel, layer, analysis and test asks this module how big a volume
comes out, so there is one formula and one error message in the project.

Notation (the notes' letters, with the keyword names used beside them):

    W   input size along one spatial axis (width or height)
    F   spatial extent of the filter or pooling window  (``size``)
    S   stride                                          (``stride``)
    P   zero padding on each border                     (``pad``)
    dilation  1 = ordinary filter, 2 = one gap between taps. The notes call a
        one-gap filter "dilation = 1"; volnet follows PyTorch and Keras, where
        the same filter has dilation 2. Its effective extent is
        ``dilation*(F-1) + 1``.

A setting where ``(W - F + 2P)/S`` is not an integer leaves the last filter
hanging over the border. The notes call it invalid and allow a library to
"throw exception or zero pad or crop to make it fit"; volnet raises
:class:`ShapeError` unless asked to ``fit="pad"`` (extra zeros on the
bottom/right) or ``fit="crop"`` (drop the bottom/right rows the filter never
reaches, which is what PyTorch does silently).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

FITS = (None, "pad", "crop")


class ShapeError(ValueError):
    """A volume or hyperparameter that does not fit; the message says how to fix it."""


def pair(value, name: str = "value") -> tuple[int, int]:
    """Normalise an int-or-pair argument to ``(height, width)`` ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}")
        first, second = value
    else:
        first = second = value
    try:
        return operator.index(first), operator.index(second)
    except TypeError:
        raise ValueError(f"{name} must be integers, got {value!r}") from None


def effective_extent(F: int, dilation: int = 1) -> int:
    """Span of a dilated filter: ``dilation*(F-1) + 1`` (F itself when dilation is 1)."""
    return dilation * (F - 1) + 1


@dataclass(frozen=True)
class Fit:
    """How one spatial axis is covered: output size and the padding actually used.

    ``pad_after`` may be smaller than the requested P (or negative) when
    ``fit="crop"`` drops rows the filter never reaches; it is larger than P
    when ``fit="pad"`` adds zeros on the bottom/right.
    """

    size: int
    pad_before: int
    pad_after: int


def _describe(layer: str | None, axis: str) -> str:
    where = f"{layer}: " if layer else ""
    return f"{where}{axis}"


# The suggestions below are closed forms over residues, never loops over a user's number: a stride or padding of
# 2**70 (a typo, a hostile checkpoint header) gets its answer as fast as a stride of 2.
DIVISOR_SEARCH = 1000  # trial divisions for a stride suggestion: exact for spans up to DIVISOR_SEARCH**2


def _nearest(target: int, residue: int, modulus: int, low: int, high: int | None = None) -> list[int]:
    """``[n]``: the ``n`` with ``n % modulus == residue`` and ``low <= n <= high`` nearest ``target``
    (the smaller on a tie), or ``[]`` when there is none."""
    below = target - (target - residue) % modulus
    candidates = [below, below + modulus, low + (residue - low) % modulus]
    if high is not None:
        candidates.append(high - (high - residue) % modulus)
    valid = [n for n in candidates if n >= low and (high is None or n <= high)]
    return sorted(valid, key=lambda n: (abs(n - target), n))[:1]


def _nearest_valid_pads(W: int, extent: int, S: int, P: int) -> list[int]:
    """The padding ``p >= 0`` nearest ``P`` with ``(W - extent + 2p)`` a non-negative multiple of ``S``."""
    span = W - extent
    if S % 2 == 0:  # 2p is even: only an even span can be completed, and p matters modulo S/2
        if span % 2:
            return []
        modulus, residue = S // 2, (-span // 2) % (S // 2)
    else:  # 2 is invertible modulo an odd S
        modulus, residue = S, (-span * pow(2, -1, S)) % S if S > 1 else 0
    return _nearest(P, residue, modulus, max(0, -(span // 2)))


def _nearest_valid_filters(W: int, F: int, S: int, P: int, dilation: int) -> list[int]:
    """The filter size ``f >= 1`` nearest ``F`` whose extent fits ``W + 2P`` and leaves a multiple of ``S``."""
    total = W + 2 * P  # need dilation*(f-1) + 1 <= total and dilation*(f-1) = total - 1 (mod S)
    common = math.gcd(dilation, S)
    if (total - 1) % common:
        return []
    modulus = S // common
    residue = (1 + (total - 1) // common * pow(dilation // common, -1, modulus)) % modulus if modulus > 1 else 0
    return _nearest(F, residue, modulus, 1, (total - 1) // dilation + 1)


def _nearest_valid_strides(W: int, extent: int, S: int, P: int) -> list[int]:
    """The divisor of ``W - extent + 2P`` nearest ``S`` among those found by :data:`DIVISOR_SEARCH` trial
    divisions (all of them for smaller spans), the span itself and its common divisor with ``S``."""
    span = W - extent + 2 * P
    if span < 0:
        return []
    if span == 0:
        return [1]
    valid = {1, span, math.gcd(span, S)}
    for d in range(1, min(math.isqrt(span), DIVISOR_SEARCH) + 1):
        if span % d == 0:
            valid.update((d, span // d))
    return sorted(valid, key=lambda s: (abs(s - S), s))[:1]


def _output_text(span: int, S: int) -> str:
    """``span/S + 1`` for a message: ``"3.5"``, or ``"1 + 6/38217527819970"`` where decimals would round it to an
    integer."""
    text = f"{span / S + 1:g}"
    return text if "." in text or "e" in text else f"{span // S + 1} + {span % S}/{S}"


def fit_axis(W: int, F: int, S: int = 1, P: int = 0, dilation: int = 1, *,
             fit: str | None = None, layer: str | None = None, axis: str = "width",
             pool: bool = False) -> Fit:
    """Output size along one axis, with the padding that makes it fit.

    Raises :class:`ShapeError` for non-positive hyperparameters, an output
    smaller than 1, or (when ``fit`` is None) an inexact division.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of None, 'pad', 'crop'; got {fit!r}")
    where = _describe(layer, axis)
    for name, value, low in (("W", W, 1), ("F", F, 1), ("S", S, 1), ("P", P, 0), ("dilation", dilation, 1)):
        if int(value) != value or value < low:
            raise ShapeError(f"{where}: {name} must be an integer >= {low}, got {value!r}")
    extent = effective_extent(F, dilation)
    span = W - extent + 2 * P
    formula = (f"(W - F + 2P)/S + 1 = ({W} - {extent} + 2*{P})/{S} + 1" if not pool
               else f"(W - F)/S + 1 = ({W} - {extent})/{S} + 1")
    if span < 0:
        hint = f"use a smaller filter (F <= {W + 2 * P}) or more padding"
        if dilation > 1:
            hint = f"the dilated filter spans {extent}; use a smaller F or dilation, or more padding"
        raise ShapeError(f"{where}: the filter does not fit: {formula} = {span / S + 1:g} < 1; {hint}")
    if span % S == 0 or fit == "crop":
        size = span // S + 1
    elif fit == "pad":
        size = -(-span // S) + 1
        if (size - 1) * S >= W + P:  # with S > F the extra window would hold padding only
            size -= 1
    else:
        suggestions = []
        pads = _nearest_valid_pads(W, extent, S, P)
        if pads and not pool:
            suggestions.append(f"P={pads[0]}")
        filters = _nearest_valid_filters(W, F, S, P, dilation)
        if filters:
            suggestions.append(f"F={filters[0]}")
        strides = _nearest_valid_strides(W, extent, S, P)
        if strides:
            suggestions.append(f"S={strides[0]}")
        fix = " or ".join(suggestions)
        fix = f"use {fix}, " if fix else ""
        raise ShapeError(
            f"{where}: {formula} = {_output_text(span, S)} is not an integer, so the filters do not "
            f"tile the input evenly; {fix}or pass fit='pad' (zero-pad bottom/right) or "
            f"fit='crop' (drop the last {span % S} row(s)/column(s))"
        )
    used = (size - 1) * S + extent  # rows of the padded input that some filter reaches
    return Fit(size=size, pad_before=P, pad_after=used - W - P)


def conv_output_size(W: int, F: int, S: int = 1, P: int = 0, dilation: int = 1, *,
                     fit: str | None = None, layer: str | None = None, axis: str = "width") -> int:
    """Spatial output size of a CONV layer: ``(W - F + 2P)/S + 1``.

    ``F`` is replaced by the effective extent ``dilation*(F-1)+1`` for a
    dilated filter.

    >>> conv_output_size(32, 3, 1, 1)       # F=3, S=1, P=1 keeps the size
    32
    >>> conv_output_size(227, 11, 4, 0)     # AlexNet's first layer
    55
    """
    return fit_axis(W, F, S, P, dilation, fit=fit, layer=layer, axis=axis).size


def pool_output_size(W: int, F: int, S: int | None = None, *, fit: str | None = None,
                     layer: str | None = None, axis: str = "width") -> int:
    """Spatial output size of a POOL layer: ``(W - F)/S + 1`` (no padding); S defaults to F.

    >>> pool_output_size(32, 2, 2)
    16
    """
    return fit_axis(W, F, F if S is None else S, 0, 1, fit=fit, layer=layer, axis=axis, pool=True).size


def as_volume_shape(shape, name: str = "input_shape") -> tuple[int, int, int]:
    """Validate a single-volume shape ``(H, W, D)``."""
    try:
        dims = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise ShapeError(f"{name} must be (height, width, depth), got {shape!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise ShapeError(f"{name} must be (height, width, depth) with positive sizes, got {shape!r}")
    return dims


def format_volume(shape) -> str:
    """``(32, 32, 12)`` -> ``'32x32x12'``, the notes' way of writing volumes."""
    return "x".join(str(s) for s in shape)
