"""Analysis of a network from shapes alone: volumes, parameters, MACs, memory, receptive fields, lints.

Nothing here allocates an activation or reads a weight, so VGG-16 (138M
parameters, 15.5G multiply-adds) is described in milliseconds, from a
network built with ``allocate=False`` or from unbuilt layer objects.

* :func:`analyze` / :func:`analyze_layers` -> :class:`Report`: one
  :class:`LayerRow` per layer (output volume, params, MACs, FLOPs = 2*MACs,
  other ops, activations, receptive field), totals, :class:`Memory` in
  training and inference, lints; ``report.table()`` and ``report.to_dict()``.
* :func:`max_batch_size` / :func:`batch_fit`: the largest batch for a
  memory budget (``"12GB"``, ``"1.5GiB"``, bytes).
* :func:`receptive_fields`, :func:`compare_stack`: the notes' 3x3 vs 7x7.
* :func:`lint` / :data:`RULES`: the notes' "Layer Sizing Patterns".

Example:
    >>> from volnet.layers import Conv2D, ReLU, MaxPool, FC
    >>> report = analyze_layers([Conv2D(16, 3, P=1), ReLU(), MaxPool(2), FC(10)], (32, 32, 3), batch=64)
    >>> report.total_params, report.rows[2].output_shape, report.rows[2].rf.size
    (41418, (16, 16, 16), (4, 4))
"""

from __future__ import annotations

from .lints import RULES, Lint, lint
from .memory import BatchFit, Memory, bytes_per_value, fit_batch, format_bytes, parse_budget
from .receptive_field import ReceptiveField, StackComparison, compare_stack, receptive_fields
from .report import Report, analyze, analyze_layers
from .walk import LayerRow


def batch_fit(net, budget="12GB", optimizer: str | None = "momentum", dtype=None, mode: str = "train", *,
              input_shape=None) -> BatchFit:
    """The largest batch whose memory (:class:`Memory` ``total``) fits ``budget``, with the figures and why.

    ``net`` is anything :func:`analyze` takes (with ``input_shape`` for a
    list of layers), or a :class:`Report`. ``budget`` is bytes or a string
    such as ``"12GB"`` (10**9 bytes each), ``"1.5GiB"`` (2**30 each). The
    batch is 0 when one volume does not fit, and ``explanation`` says
    whether the parameters alone already exceed the budget.

    Raises:
        ValueError: for a budget that is not bytes or a string like "12GB".
    """
    return fit_batch(_report(net, dtype, optimizer, input_shape), budget, optimizer=optimizer, dtype=dtype,
                     mode=mode)


def max_batch_size(net, budget="12GB", optimizer: str | None = "momentum", dtype=None, mode: str = "train", *,
                   input_shape=None) -> int:
    """The notes' "decrease the batch size until it fits": the largest batch within ``budget``, 0 if none.

    Same arguments as :func:`batch_fit`, which also says why.

    >>> from volnet.layers import Conv2D, FC
    >>> max_batch_size([Conv2D(8, 3, P=1), FC(10)], "4MiB", input_shape=(32, 32, 3))   # 963 KiB fixed
    18
    """
    return batch_fit(net, budget, optimizer, dtype, mode, input_shape=input_shape).batch


def _report(net, dtype, optimizer, input_shape) -> Report:
    if isinstance(net, Report):
        return net
    return analyze(net, dtype=dtype, optimizer=optimizer, input_shape=input_shape)


__all__ = [
    "analyze", "analyze_layers", "Report", "LayerRow", "Memory", "max_batch_size", "batch_fit",
    "BatchFit", "parse_budget", "format_bytes", "bytes_per_value", "ReceptiveField", "receptive_fields",
    "compare_stack", "StackComparison", "lint", "Lint", "RULES",
]
