"""The notes' receptive-field questions, answered by analysing real layers.

:func:`receptive_fields` lists the field of every layer of a stack;
:func:`compare_stack` puts one big CONV beside a stack of small ones that
sees as much ("prefer a stack of small filter CONV to one large receptive
field CONV layer"). See :mod:`volnet.analysis.receptive_field` for the
arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layers import Conv2D, ReLU
from .receptive_field import ReceptiveField
from .report import analyze_layers


def receptive_fields(layers, input_shape) -> list[ReceptiveField]:
    """The receptive field of every layer of ``layers`` (shapes only; nothing is built).

    >>> from volnet.layers import Conv2D
    >>> [rf.size for rf in receptive_fields([Conv2D(8, 3, P=1)] * 3, (32, 32, 3))]
    [(3, 3), (5, 5), (7, 7)]
    """
    report = analyze_layers(layers, input_shape)
    return [row.rf for row in report.rows if row.depth == 0]


@dataclass(frozen=True)
class StackComparison:
    """One big CONV against a stack of small ones with the same receptive field (all volumes C deep).

    ``big_weights`` and ``small_weights`` count weights only, as the notes
    do (``C*(7*7*C) = 49C^2`` against ``3*(C*(3*3*C)) = 27C^2``); biases add
    C per layer. ``*_macs`` are multiply-adds on an ``size x size x C``
    volume, and ``extra_activations`` the values of the intermediate
    volumes the stack must keep for backprop ("but require more memory").
    """

    C: int
    F_big: int
    F_small: int
    layers: int
    size: int
    big_weights: int
    small_weights: int
    big_rf: int
    small_rf: int
    big_macs: int
    small_macs: int
    extra_activations: int

    def describe(self) -> str:
        C, n = self.C, self.layers
        return (f"one {self.F_big}x{self.F_big} CONV: C*({self.F_big}*{self.F_big}*C) = "
                f"{self.F_big ** 2}C^2 = {self.big_weights:,} weights, sees {self.big_rf}x{self.big_rf}\n"
                f"{n} stacked {self.F_small}x{self.F_small} CONVs: {n}*(C*({self.F_small}*{self.F_small}*C)) = "
                f"{n * self.F_small ** 2}C^2 = {self.small_weights:,} weights, sees {self.small_rf}x{self.small_rf}\n"
                f"(C = {C}; on a {self.size}x{self.size}x{C} volume the stack keeps {self.extra_activations:,} "
                f"more activations for backprop)")


def compare_stack(C: int, F_big: int = 7, F_small: int = 3, size: int = 32) -> StackComparison:
    """The notes' comparison: one ``F_big`` CONV vs a stack of ``F_small`` CONVs, C channels throughout.

    The stack has ``(F_big - 1)/(F_small - 1)`` layers, so both see
    ``F_big x F_big``. Both are analysed as real layers (with 'same'
    padding, ReLUs between the small CONVs) on a ``size x size x C`` volume.

    >>> c = compare_stack(64)
    >>> c.big_weights == 49 * 64**2, c.small_weights == 27 * 64**2, c.big_rf == c.small_rf == 7
    (True, True, True)

    Raises:
        ValueError: if ``F_big - 1`` is not a multiple of ``F_small - 1``, or
            the filters are not odd (no padding would keep the size).
    """
    if F_small < 2 or F_big <= F_small or (F_big - 1) % (F_small - 1):
        raise ValueError(f"F_big - 1 = {F_big - 1} must be a multiple of F_small - 1 = {F_small - 1} "
                         f"(with F_big > F_small >= 2) for a stack of {F_small}x{F_small} CONVs to see "
                         f"exactly {F_big}x{F_big}")
    if F_big % 2 == 0 or F_small % 2 == 0:
        raise ValueError(f"use odd filter sizes (got {F_big} and {F_small}) so that P=(F-1)/2 keeps the size")
    n = (F_big - 1) // (F_small - 1)
    big = analyze_layers([Conv2D(C, F_big, P=(F_big - 1) // 2)], (size, size, C))
    stack = []
    for i in range(n):
        stack += [Conv2D(C, F_small, P=(F_small - 1) // 2)] + ([ReLU()] if i < n - 1 else [])
    small = analyze_layers(stack, (size, size, C))
    small_convs = [row for row in small.rows if row.kind == "conv"]
    return StackComparison(
        C=C, F_big=F_big, F_small=F_small, layers=n, size=size,
        big_weights=big.rows[0].params - C, small_weights=sum(row.params - C for row in small_convs),
        big_rf=big.rows[0].rf.size[0], small_rf=small_convs[-1].rf.size[0],
        big_macs=big.total_macs, small_macs=small.total_macs,
        extra_activations=sum(row.activations for row in small_convs[:-1]),
    )
