"""Receptive fields: how much of the input one neuron of a layer sees.

Notation, per spatial axis (height and width are tracked separately):

    r      size: the neuron sees an r x r patch of the input image
    j      jump: moving one neuron along an axis moves its patch by j input pixels
    start  centre of the first (top-left) neuron's patch, in input pixels
           (pixel k of the input is centred at k; a negative start lies in the padding)

A window layer with extent F, stride S, padding P and dilation d (effective
extent ``F_eff = d*(F-1) + 1``, see :func:`volnet.shapes.effective_extent`)
maps ``(r, j, start)`` to::

    j_out     = j_in * S
    r_out     = r_in + (F_eff - 1) * j_in
    start_out = start_in + ((F_eff - 1)/2 - P) * j_in

The input image has ``r = 1, j = 1, start = 0``. So three stacked 3x3 CONVs
see 7x7 (1 -> 3 -> 5 -> 7), and a 3x3 CONV with dilation 1 followed by one
with dilation 2 sees 7x7 too (1 -> 3 -> 7): the notes' "merge spatial
information across inputs with fewer layers". (The notes call the one-gap
filter "dilation = 1"; volnet calls it dilation 2, as PyTorch and Keras do.)

An FC layer on an H x W x D volume is the CONV layer with F = H x W (the
notes' FC->CONV conversion), so its neurons see ``r_in + (H-1)*j_in``:
everything the volume's neurons see together. Global average pooling is
the same window. Where paths branch and merge (Residual, Concat) a neuron
sees the union of what its paths see: the result is the path with the
largest field, per axis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReceptiveField:
    """``size``, ``jump`` and ``start`` as ``(height, width)`` pairs; see the module docstring."""

    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    start: tuple[float, float] = (0.0, 0.0)

    def through(self, F, S=(1, 1), P=(0, 0), dilation=(1, 1)) -> ReceptiveField:
        """The field after a window layer with extent F, stride S, padding P (all ``(h, w)`` pairs)."""
        size, jump, start = [], [], []
        for a in range(2):
            extent = dilation[a] * (F[a] - 1) + 1
            size.append(self.size[a] + (extent - 1) * self.jump[a])
            jump.append(self.jump[a] * S[a])
            start.append(self.start[a] + ((extent - 1) / 2 - P[a]) * self.jump[a])
        return ReceptiveField(tuple(size), tuple(jump), tuple(start))

    def describe(self) -> str:
        """``'7x7'`` (the size only; the jump and start are in :meth:`to_dict`)."""
        return f"{self.size[0]}x{self.size[1]}"

    def to_dict(self) -> dict:
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start)}


def union(fields: list[ReceptiveField]) -> ReceptiveField:
    """The field of a neuron fed by several paths: per axis, the path with the largest size (first on ties)."""
    size, jump, start = [], [], []
    for a in range(2):
        widest = max(fields, key=lambda f: f.size[a])
        size.append(widest.size[a])
        jump.append(max(f.jump[a] for f in fields))
        start.append(widest.start[a])
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))


def receptive_fields(layers, input_shape) -> list[ReceptiveField]:
    """The receptive field of every layer of ``layers`` (shapes only; nothing is built).

    >>> from volnet.layers import Conv2D
    >>> [rf.size for rf in receptive_fields([Conv2D(8, 3, P=1)] * 3, (32, 32, 3))]
    [(3, 3), (5, 5), (7, 7)]
    """
    from .report import analyze_layers

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
    from ..layers import Conv2D, ReLU
    from .report import analyze_layers

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
