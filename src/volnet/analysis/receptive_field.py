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
