"""The analysis of a network: per-layer rows, totals, memory and lints, as text or JSON.

:func:`analyze` takes a built :class:`~volnet.Sequential` (including one built
with ``allocate=False``); :func:`analyze_layers` takes unbuilt layer objects
and the input volume. Both ask each layer for ``output_shape`` only, so
VGG-16 is described in milliseconds without its 553 MB of weights.

Example:
    >>> from volnet.layers import Conv2D, ReLU, MaxPool, FC
    >>> report = analyze_layers([Conv2D(12, 3, P=1), ReLU(), MaxPool(2), FC(10)], (32, 32, 3))
    >>> report.total_params, report.total_macs   # 3*3*3*12 + 12 + 3072*10 + 10; 32*32*12*27 + 3072*10
    (31066, 362496)
"""

from __future__ import annotations

import math
from functools import cached_property

from ..display import html_table
from ..ops import threads
from ..shapes import as_volume_shape, format_volume
from .lints import RULES, lint
from .memory import Memory, memory, notes_activation_values
from .units import bytes_per_value, cache_multiplier, dtype_name, format_bytes
from .walk import LayerRow, Node, walk

TABLE_HEADER = ("#", "layer", "output", "activations", "params", "MACs", "RF", "jump", "kept (train)")


class Report:
    """What :func:`analyze` finds: ``rows`` (one :class:`LayerRow` per layer, containers' children
    included), totals, :class:`~volnet.analysis.Memory` for training and inference, and lints.

    Totals count one forward pass on one volume: ``total_macs`` multiply-adds,
    ``total_flops = 2 * total_macs``, ``total_other_ops`` (see
    :mod:`volnet.analysis.walk` for what counts as what).
    """

    def __init__(self, nodes: list[Node], rows: list[LayerRow], input_shape, *, batch=1, dtype="float32",
                 optimizer="momentum", cores: int = 1):
        self.nodes, self.rows = nodes, rows
        self.input_shape = tuple(input_shape)
        self.batch, self.dtype, self.optimizer = int(batch), dtype_name(dtype), optimizer
        self.bytes_per_value = bytes_per_value(dtype)
        self.cores = int(cores)  # what a network pass splits its kernels over: the workspace depends on it

    # -- totals ------------------------------------------------------------------
    @property
    def output_shape(self) -> tuple:
        top = [node.row for node in self.nodes]
        return top[-1].output_shape if top else self.input_shape

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.rows)

    @property
    def total_macs(self) -> int:
        """Multiply-adds of one forward pass on one volume (CONV, LC and FC layers)."""
        return sum(row.macs for row in self.rows)

    @property
    def total_flops(self) -> int:
        """``2 * total_macs``: floating-point operations of the multiply-adds (other ops not included)."""
        return 2 * self.total_macs

    @property
    def total_other_ops(self) -> int:
        return sum(row.other_ops for row in self.rows)

    @property
    def activation_values(self) -> int:
        """Every layer's output plus the input, per volume (RELU, BatchNorm... outputs included)."""
        return math.prod(self.input_shape) + sum(row.activations for row in self.rows)

    @property
    def notes_activation_values(self) -> int:
        """The notes' count per volume: the input plus every CONV, LC, POOL and FC output (and merges)."""
        return notes_activation_values(self)

    def params_in(self, kind: str) -> int:
        """Parameters held by layers of one kind (``"fc"``, ``"conv"``...)."""
        return sum(row.params for row in self.rows if row.kind == kind)

    # -- memory and lints ------------------------------------------------------------
    def memory(self, mode: str = "train", batch: int | None = None, optimizer: str | None = None,
               dtype=None, cores: int | None = None) -> Memory:
        """The memory terms for ``mode`` ``"train"`` or ``"inference"`` (defaults: this report's settings)."""
        return memory(self, mode, batch, optimizer, dtype, cores)

    @cached_property
    def train(self) -> Memory:
        return self.memory("train")

    @cached_property
    def inference(self) -> Memory:
        return self.memory("inference")

    @cached_property
    def lints(self) -> list:
        return lint(self)

    @property
    def notes(self) -> list[str]:
        """Caveats: layers whose type analysis does not know (their MACs are not counted)."""
        return [f"layer {row.path} ({row.name}): unknown layer type; parameters counted from its built "
                "weights, multiply-adds not counted, memory estimated as a plain elementwise layer"
                for row in self.rows if row.kind == "other"]

    # -- rendering ------------------------------------------------------------------
    def table(self) -> str:
        """Plain text: one line per layer (output volume, activations, params, MACs, receptive field,
        bytes kept for backprop), then totals, memory in training and inference, and lints."""
        rows = [TABLE_HEADER, *self._layer_rows()]
        widths = [max(len(r[c]) for r in rows) for c in range(len(TABLE_HEADER))]
        left = (1, 2)
        lines = ["  ".join(cell.ljust(w) if c in left else cell.rjust(w) for c, (cell, w) in
                           enumerate(zip(r, widths))).rstrip() for r in rows]
        rule = "-" * max(len(line) for line in lines)
        lines[1:1] = [rule]
        lines.append(rule)
        return "\n".join(lines + self._totals())

    def _repr_html_(self) -> str:
        """:meth:`table` for notebooks: the layer rows as a table, the totals, memory and lints under it."""
        return html_table(TABLE_HEADER, self._layer_rows(), right=(0, *range(3, len(TABLE_HEADER))),
                          title=f"{len(self.rows)} layers, input {format_volume(self.input_shape)}, "
                                f"batch {self.batch}, {self.dtype}",
                          notes="\n".join(self._totals()))

    def _layer_rows(self) -> list[tuple[str, ...]]:
        kept = self.train.kept_by
        rows = [("", "INPUT", format_volume(self.input_shape), f"{math.prod(self.input_shape):,}",
                 "0", "0", "1x1", "1", "")]
        for row in self.rows:
            rows.append((row.path, "  " * row.depth + row.name, _volume(row.output_shape), f"{row.activations:,}",
                         f"{row.params:,}", _compact(row.macs), row.rf.describe(),
                         _jump(row.rf.jump) if len(row.output_shape) == 3 else "",
                         format_bytes(kept[row.path]).split(" (")[0] if kept.get(row.path) else ""))
        return rows

    def _totals(self) -> list[str]:
        b = self.bytes_per_value
        notes_values, all_values = self.notes_activation_values, self.activation_values
        lines = [
            f"parameters: {self.total_params:,}",
            f"MACs (multiply-adds, one forward pass, one volume): {self.total_macs:,} ({_compact(self.total_macs)})",
            f"FLOPs = 2 x MACs: {self.total_flops:,} ({_compact(self.total_flops)}); "
            f"other ops (bias adds, RELU, pooling, BatchNorm, adds): {self.total_other_ops:,}",
            f"activations per volume, the notes' count (input + every CONV/POOL/FC output): {notes_values:,} "
            f"values = {format_bytes(notes_values * b)} in {self.dtype}",
            f"activations per volume, every layer output + input (RELU etc. included): {all_values:,} values = "
            f"{format_bytes(all_values * b)}",
            f"kept (train): bytes volnet's layers keep for backprop, batch {self.batch}",
            "",
            self.train.text(),
            "",
            self.inference.text(),
        ]
        if self.lints:
            lines += ["", "lints (the notes' Layer Sizing Patterns; each rule, then what breaks it):"]
            for rule in dict.fromkeys(found.rule for found in self.lints):
                lines.append(f"  [{rule}] {RULES[rule]}")
                lines += [f"    {found.severity}: {found.layer}: {found.message}"
                          for found in self.lints if found.rule == rule]
        if self.notes:
            lines += ["", "notes:"] + [f"  {note}" for note in self.notes]
        return lines

    def to_dict(self) -> dict:
        """Everything in :meth:`table` as JSON-able values (bytes as ints, shapes as lists)."""
        return {
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "dtype": self.dtype,
            "bytes_per_value": self.bytes_per_value,
            "optimizer": self.optimizer,
            "conventions": {
                "macs": "multiply-adds of CONV, LocallyConnected and FC layers, one forward pass, one volume",
                "flops": "2 * macs (a multiply and an add each)",
                "other_ops": "bias adds, RELU, pooling comparisons/adds, BatchNorm scale and shift, residual adds",
                "activations": "values in a layer's output volume",
                "notes_activation_values": "input + every CONV, LC, POOL, FC output and Residual/Concat merge",
                "bytes": "all memory figures are bytes; MiB = 2**20 bytes, MB = 10**6 bytes",
            },
            "layers": [_row_dict(row) for row in self.rows],
            "totals": {
                "params": self.total_params,
                "macs": self.total_macs,
                "flops": self.total_flops,
                "other_ops": self.total_other_ops,
                "activation_values": self.activation_values,
                "notes_activation_values": self.notes_activation_values,
            },
            "memory": {"train": self.train.to_dict(), "inference": self.inference.to_dict()},
            "lints": [found.to_dict() for found in self.lints],
            "notes": self.notes,
        }

    def __repr__(self):
        return (f"Report({len(self.rows)} layers, input {format_volume(self.input_shape)}, "
                f"{self.total_params:,} params, {_compact(self.total_macs)} MACs)")


def analyze_layers(layers, input_shape, *, batch: int = 1, dtype="float32",
                   optimizer: str | None = "momentum", cores: int | None = None) -> Report:
    """Analyse a list of (built or unbuilt) layers on one input volume ``(H, W, D)``.

    Args:
        layers: layer objects, first to last; containers (Residual, Concat,
            Inception) are walked into.
        input_shape: one input volume ``(H, W, D)``.
        batch: volumes per batch, for the memory figures. Default: 1.
        dtype: value type, for bytes (float32: 4). Default: "float32".
        optimizer: its step cache counts in training memory ("sgd",
            "momentum", "nesterov", "adagrad", "rmsprop", "adam", or None
            for none). Default: "momentum".
        cores: the cores a network pass splits its kernels over, which sets
            the workspace (each thread has its own blocks). Default: None,
            this machine's (:func:`volnet.ops.threads.cores`).

    Raises:
        ShapeError: where a layer's hyperparameters do not fit its input
            (the message names the layer by its path).
        ValueError: for batch < 1 or an unknown optimizer.
    """
    input_shape = as_volume_shape(input_shape)
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    cache_multiplier(optimizer)  # an unknown name fails here, not when memory is asked for
    bytes_per_value(dtype)
    nodes, _, _, _, rows = walk(list(layers), input_shape)
    return Report(nodes, rows, input_shape, batch=batch, dtype=dtype, optimizer=optimizer,
                  cores=machine_cores() if cores is None else cores)


def analyze(net, batch: int = 1, dtype=None, optimizer: str | None = "momentum", *, input_shape=None,
            cores: int | None = None) -> Report:
    """Analyse a network: a :class:`~volnet.Sequential` (built, or built with ``allocate=False``), or a
    list of layers with ``input_shape``. ``dtype`` defaults to the network's (float32 for a list).

    No weights are read and no activations allocated; see :func:`analyze_layers` for the arguments.

    Example:
        >>> from volnet import Sequential
        >>> from volnet.layers import Conv2D, ReLU, MaxPool, FC
        >>> net = Sequential([Conv2D(16, 3, P=1), ReLU(), MaxPool(2), FC(10)], input_shape=(32, 32, 3))
        >>> report = analyze(net, batch=64)
        >>> report.total_params == net.num_params, report.rows[0].rf.size
        (True, (3, 3))
    """
    if hasattr(net, "layers") and hasattr(net, "input_shape"):
        layers, shape = net.layers, net.input_shape if input_shape is None else input_shape
        dtype = getattr(net, "dtype", "float32") if dtype is None else dtype
    elif isinstance(net, (list, tuple)):
        if input_shape is None:
            raise ValueError("analyze(layers) needs input_shape=(H, W, D) for a list of layers")
        layers, shape = net, input_shape
    else:
        raise TypeError(f"analyze() takes a Sequential or a list of layers, got {type(net).__name__}")
    return analyze_layers(layers, shape, batch=batch, dtype="float32" if dtype is None else dtype,
                          optimizer=optimizer, cores=cores)


def machine_cores() -> int:
    """The cores this machine's network passes split their kernels over (:func:`volnet.ops.threads.cores`)."""
    return threads.cores()


def _row_dict(row: LayerRow) -> dict:
    return {"path": row.path, "layer": row.name, "kind": row.kind, "depth": row.depth,
            "input_shape": list(row.input_shape), "output_shape": list(row.output_shape),
            "activations": row.activations, "params": row.params, "macs": row.macs, "flops": row.flops,
            "other_ops": row.other_ops, "receptive_field": row.rf.to_dict()}


def _volume(shape) -> str:
    return format_volume((1, 1, *shape) if len(shape) == 1 else shape)


def _jump(jump) -> str:
    return str(jump[0]) if jump[0] == jump[1] else f"{jump[0]}x{jump[1]}"


def _compact(n: int) -> str:
    """``15.5G`` for 15,470,264,320: the notes' way of writing big counts (powers of 1000)."""
    for unit, size in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
