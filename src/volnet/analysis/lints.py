"""Lints: the notes' "Layer Sizing Patterns" checked against a network.

Each :class:`Lint` names its rule (a key of :data:`RULES`, whose value
quotes the notes), the layer, what is wrong and what to try. Severity is
``"warning"`` for a departure from the notes' rules and ``"info"`` for a
legitimate choice worth a second look (a strided CONV).

Rules:

* ``input-size``: the input height or width is not a multiple of the
  network's total stride (the product of every CONV and POOL stride: 32
  for five 2x2 pools), so some layer drops or pads rows. The notes: the
  input "should be divisible by 2 many times".
* ``conv-filter-size``: a CONV (or LC) filter larger than 5x5. An FC layer
  written as a CONV (the filter covers the whole input) is exempt.
* ``conv-stride``: a CONV with stride > 1 (info).
* ``conv-shrinks``: a stride-1 CONV whose output is smaller than its input
  (too little zero padding).
* ``pool-window``: a POOL window larger than 3x3 (global pooling exempt).
* ``fc-params``: FC layers hold more than half of the parameters of a
  convolutional network, and one of them reads a spatial volume (an FC
  classifier after global average pooling is what the notes recommend).
* ``crop-drops-data``: ``fit="crop"`` drops input rows or columns that no
  filter reaches (info when the filter is smaller than its stride, e.g. a
  1x1 stride-2 shortcut, which skips rows between taps by design).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..shapes import format_volume


RULES = {
    "input-size": "INPUT layer: should be divisible by 2 many times, e.g. 32 (CIFAR-10), 64, 96 (STL-10), "
                  "224 (ImageNet), 384, 512.",
    "conv-filter-size": "CONV layers: small filters (3x3 or 5x5 at most); prefer a stack of small filter CONVs "
                        "to one CONV with a large receptive field: three 3x3 CONVs see 7x7 with 27C^2 weights "
                        "instead of 49C^2, and have non-linearities in between.",
    "conv-stride": "CONV layers: S=1, with zero padding so that the CONV does not alter the spatial size; "
                   "this pattern only downsamples in POOL layers, and smaller strides work better (nets "
                   "without pooling use a larger stride in a CONV layer once in a while).",
    "conv-shrinks": "CONV layers: pad the input with zeros so that the CONV does not alter the spatial size "
                    "(P=(F-1)/2 with S=1); without padding the volume shrinks by a little each layer and the "
                    "information at the borders is washed away too quickly.",
    "pool-window": "POOL layers: max pooling with 2x2 receptive fields (F=2) and S=2, or F=3, S=2; "
                   "receptive fields larger than 3x3 are too lossy and aggressive, and perform worse.",
    "fc-params": "VGGNet: most parameters are in the first FC layer, and these FC layers were later found "
                 "removable without a drop in performance; GoogLeNet and ResNet use average pooling "
                 "instead of FC layers at the top.",
    "crop-drops-data": "(W - F + 2P)/S + 1 must be an integer; otherwise throw an exception, or zero pad or "
                       "crop to make it fit. Cropping drops the rows the filters never reach.",
}

FC_SHARE = 0.5  # fc-params fires above this fraction of all parameters


@dataclass(frozen=True)
class Lint:
    """One finding: the rule (a key of :data:`RULES`), the layer, the message and its severity."""

    rule: str
    layer: str
    message: str
    severity: str = "warning"

    @property
    def quote(self) -> str:
        """The notes' rule this lint comes from."""
        return RULES[self.rule]

    def text(self) -> str:
        return f"  {self.severity}: [{self.rule}] {self.layer}: {self.message}\n      notes: {self.quote}"

    def to_dict(self) -> dict:
        return {"rule": self.rule, "layer": self.layer, "severity": self.severity, "message": self.message,
                "notes": self.quote}


def lint(report) -> list[Lint]:
    """Every finding for an analysed network (:class:`~volnet.analysis.Report`), input first, then by layer."""
    found = _input_size(report)
    for row in report.rows:
        where = f"layer {row.path} {row.name}"
        if row.kind in ("conv", "local"):
            found += _conv(row, where)
        if row.kind == "pool":
            F = row.layer.window(row.input_shape)[0]
            if max(F) > 3:
                found.append(Lint("pool-window", where, f"a {F[0]}x{F[1]} window keeps 1 value in {F[0] * F[1]}; "
                                  "use F=2, S=2 or the overlapping F=3, S=2"))
        if row.kind in ("conv", "local", "pool"):
            found += _crop(row, where)
    found += _fc_params(report)
    return found


def _input_size(report) -> list[Lint]:
    strided = [row for row in report.rows if row.kind in ("conv", "local", "pool")]
    if not strided or len(report.input_shape) != 3:
        return []
    total = tuple(max(row.rf.jump[a] for row in strided) for a in range(2))
    bad = [(axis, size, stride) for axis, size, stride in zip(("height", "width"), report.input_shape[:2], total)
           if stride > 1 and size % stride]
    if not bad:
        return []
    if len(bad) == 2 and bad[0][1:] == bad[1][1:]:
        bad = [("height and width", *bad[0][1:])]
    parts = []
    for axis, size, stride in bad:
        below, above = size // stride * stride, (size // stride + 1) * stride
        twos = (size & -size).bit_length() - 1
        parts.append(f"{axis} {size} is not a multiple of {stride}, the network's total stride "
                     f"({size} divides by 2 {twos} time{'s' if twos != 1 else ''}); nearest multiples: "
                     f"{', '.join(str(s) for s in (below, above) if s > 0)}")
    return [Lint("input-size", f"INPUT {format_volume(report.input_shape)}",
                 "; ".join(parts) + ", so some layer pads or drops rows on the way down")]


def _is_fc_in_disguise(row) -> bool:
    """A CONV whose filter covers its whole (unpadded) input: the notes' FC->CONV conversion."""
    F, _, P, _ = row.layer.window(row.input_shape)
    return tuple(F) == tuple(row.input_shape[:2]) and P == (0, 0)


def _conv(row, where) -> list[Lint]:
    found = []
    F, S, P, dilation = row.layer.window(row.input_shape)
    if _is_fc_in_disguise(row):
        return found
    if max(F) > 5:
        f = max(F)
        stack = (f"{(f - 1) // 2} stacked 3x3 CONVs see {f}x{f} too, with {9 * ((f - 1) // 2)}C^2 weights instead "
                 f"of {f * f}C^2 (compare_stack)" if f % 2 else "a stack of 3x3 CONVs sees as far with fewer weights")
        found.append(Lint("conv-filter-size", where, f"a {F[0]}x{F[1]} filter; the notes keep CONV filters at "
                          f"3x3 or 5x5 at most: {stack}"))
    if max(S) > 1:
        found.append(Lint("conv-stride", where, f"stride {S[0] if S[0] == S[1] else S}: consider S=1 with "
                          "zero padding and downsampling in a POOL layer; a strided CONV now and then is "
                          "legitimate in nets without pooling (all-convolutional nets, ResNet)", "info"))
    H, W = row.input_shape[:2]
    H2, W2 = row.output_shape[:2]
    if S == (1, 1) and (H2 < H or W2 < W):
        extents = [d * (f - 1) + 1 for f, d in zip(F, dilation)]
        if all(e % 2 for e in extents):
            fix = f"P={(extents[0] - 1) // 2}" + (f" (or {tuple((e - 1) // 2 for e in extents)})"
                                                    if extents[0] != extents[1] else "")
            fix = f"{fix}, that is (F-1)/2, keeps the size"
        else:
            fix = "no symmetric P keeps the size with an even filter; use an odd F (3 or 5)"
        found.append(Lint("conv-shrinks", where, f"the volume shrinks from {H}x{W} to {H2}x{W2} with P={P[0]}; "
                          f"{fix}"))
    return found


def _crop(row, where) -> list[Lint]:
    if row.layer.fit != "crop":  # the window layers (conv, local, pool) all take fit
        return []
    F, S, P, dilation = row.layer.window(row.input_shape)
    dropped = []
    for a in range(2):
        size, extent = row.output_shape[a], dilation[a] * (F[a] - 1) + 1
        used = (size - 1) * S[a] + extent   # rows of the padded input some filter reaches
        dropped.append(max(0, row.input_shape[a] + P[a] - used))
    if not any(dropped):
        return []
    by_design = all(f < s for f, s in zip(F, S))
    message = (f"fit='crop' drops the last {dropped[0]} row(s) and {dropped[1]} column(s) of the "
               f"{format_volume(row.input_shape)} input, which no filter reaches")
    if by_design:
        message += f"; a {F[0]}x{F[1]} filter with stride {S[0]} skips rows between its taps anyway"
    else:
        message += "; fit='pad' or a padding/stride for which (W - F + 2P)/S is an integer keeps them"
    return [Lint("crop-drops-data", where, message, "info" if by_design else "warning")]


def _reads_a_grid(rows, index) -> bool:
    """Whether the FC layer ``rows[index]`` reads a spatial volume (H*W > 1), directly or through Flatten."""
    shape = rows[index].input_shape
    if len(shape) == 1 and index > 0 and rows[index - 1].kind == "flatten":
        shape = rows[index - 1].input_shape
    return len(shape) == 3 and shape[0] * shape[1] > 1


def _fc_params(report) -> list[Lint]:
    """FC layers on a spatial volume holding most parameters (not a small classifier after global pooling)."""
    total = report.total_params
    fc_rows = [row for row in report.rows if row.kind == "fc"]
    fc = sum(row.params for row in fc_rows)
    convolutional = any(row.kind in ("conv", "local") for row in report.rows)
    on_grid = any(_reads_a_grid(report.rows, i) for i, row in enumerate(report.rows) if row.kind == "fc")
    if not total or fc <= FC_SHARE * total or not convolutional or not on_grid:
        return []
    largest = max(fc_rows, key=lambda row: row.params)
    return [Lint("fc-params", f"layer {largest.path} {largest.name}",
                 f"FC layers hold {fc / total:.1%} of the {total:,} parameters (this one alone "
                 f"{largest.params / total:.1%}); consider global average pooling (GlobalAvgPool) and one "
                 "small FC layer, or fewer FC neurons")]
