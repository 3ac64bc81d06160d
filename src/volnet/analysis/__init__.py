"""Analysis of a network from shapes alone: volumes, parameters, MACs, memory, receptive fields, lints.

Nothing here allocates an activation or reads a weight, so VGG-16 (138M
parameters, 15.5G multiply-adds) is described in milliseconds, from a
network built with ``allocate=False`` or from unbuilt layer objects.

* :func:`analyze` / :func:`analyze_layers` -> :class:`Report`: one
  :class:`LayerRow` per layer (output volume, params, MACs, FLOPs = 2*MACs,
  other ops, activations, receptive field), totals, :class:`Memory` in
  training and inference, lints; ``report.table()`` and ``report.to_dict()``.
* :func:`max_batch_size` / :func:`batch_fit`: the largest batch for a
  memory budget (``"12GB"``, ``"1.5GiB"``, bytes); :func:`require_fit`
  refuses work that the machine's available memory cannot hold.
* :func:`receptive_fields`, :func:`compare_stack`: the notes' 3x3 vs 7x7.
* :func:`lint` / :data:`RULES`: the notes' "Layer Sizing Patterns".

Nothing here knows a layer kind: each layer describes itself
(:class:`volnet.layers.Layer`: ``kind``, ``costs``, ``window``,
``forward_workspace``/``backward_workspace``, which delegate to the
workspace function beside each kernel in ``volnet.ops``), and the modules
only ask. The memory estimate depends on the cores a network pass splits
its kernels over: ``cores=None`` (every function here) is this machine's.

Modules, each importing only those listed after it (no circles)::

    __init__         batch_fit, max_batch_size, require_fit
    compare          receptive_fields, compare_stack       -> report, receptive_field
    report           Report, analyze, analyze_layers       -> lints, memory, units, walk
    budget           BatchFit, fit_batch                   -> memory, units
    memory           Memory, memory(): composing the terms -> replay, units
    replay           the heap engine replaying a step      -> walk (and layers, ops.workspace)
    lints            the notes' sizing rules               -> (nothing of analysis)
    walk             LayerRow, Node, walk(): rows, costs   -> receptive_field
    receptive_field  ReceptiveField arithmetic
    units            bytes per value, budgets, bytes as text

Example:
    >>> from volnet.layers import Conv2D, ReLU, MaxPool, FC
    >>> report = analyze_layers([Conv2D(16, 3, P=1), ReLU(), MaxPool(2), FC(10)], (32, 32, 3), batch=64)
    >>> report.total_params, report.rows[2].output_shape, report.rows[2].rf.size
    (41418, (16, 16, 16), (4, 4))
"""

from __future__ import annotations

from .. import resources
from ..resources import ResourceError, describe_bytes, machine_has, usable_memory
from .budget import BatchFit, fit_batch
from .compare import StackComparison, compare_stack, receptive_fields
from .lints import RULES, Lint, lint
from .memory import Memory
from .receptive_field import ReceptiveField
from .report import Report, analyze, analyze_layers
from .units import bytes_per_value, format_bytes, parse_budget
from .walk import LayerRow


def batch_fit(net, budget="12GB", optimizer: str | None = "momentum", dtype=None, mode: str = "train", *,
              input_shape=None, cores: int | None = None) -> BatchFit:
    """The largest batch whose memory (:class:`Memory` ``total``) fits ``budget``, with the figures and why.

    ``net`` is anything :func:`analyze` takes (with ``input_shape`` for a
    list of layers), or a :class:`Report`. ``budget`` is bytes or a string
    such as ``"12GB"`` (10**9 bytes each), ``"1.5GiB"`` (2**30 each). The
    batch is 0 when one volume does not fit, and ``explanation`` says
    whether the parameters alone already exceed the budget. ``cores``: see
    :func:`analyze` (a Report keeps its own unless given).

    Raises:
        ValueError: for a budget that is not bytes or a string like "12GB".
    """
    return fit_batch(_report(net, dtype, optimizer, input_shape, cores), budget, optimizer=optimizer, dtype=dtype,
                     mode=mode, cores=cores)


def max_batch_size(net, budget="12GB", optimizer: str | None = "momentum", dtype=None, mode: str = "train", *,
                   input_shape=None, cores: int | None = None) -> int:
    """The notes' "decrease the batch size until it fits": the largest batch within ``budget``, 0 if none.

    Same arguments as :func:`batch_fit`, which also says why.

    >>> from volnet.layers import Conv2D, FC
    >>> max_batch_size([Conv2D(8, 1), FC(10)], "4MiB", input_shape=(32, 32, 3))   # 960 KiB fixed
    37
    """
    return batch_fit(net, budget, optimizer, dtype, mode, input_shape=input_shape, cores=cores).batch


def require_fit(net, batch: int, mode: str = "train", optimizer: str | None = "momentum", *, what: str,
                batch_flag: str = "the batch size", fix: str | None = None, input_shape=None,
                cores: int | None = None):
    """Refuse to run ``net`` on batches of ``batch`` when volnet's own estimate does not fit in memory.

    The estimate is :class:`volnet.analysis.Memory` ``total`` (``mode`` ``"train"``:
    caches, gradients and the optimizer's state; ``"inference"``: one layer's
    input and output at a time), from shapes alone. Returns that
    :class:`~volnet.analysis.Memory` when it fits (or where the platform
    does not say what is available).

    ``what`` names the work ("training vgg16"); the advice is to lower
    ``batch_flag`` (``"--batch-size"``) to the largest batch that fits,
    unless ``fix`` gives other advice (where no flag sets the batch).

    Raises:
        ResourceError: "<what> at batch B needs X, the machine has Y
            available; lower <batch_flag> (the largest batch that fits is N)",
            or, when not even one volume fits, why (parameters alone, or one
            volume's activations) and that a smaller network is needed.

    Example:
        >>> from volnet.layers import Conv2D, FC
        >>> from volnet import Sequential
        >>> net = Sequential([Conv2D(8, 3, P=1), FC(10)], (32, 32, 3), allocate=False)
        >>> require_fit(net, 64, what="training the example").batch
        64
    """
    report = analyze(net, batch=batch, optimizer=optimizer if mode == "train" else None, input_shape=input_shape,
                     cores=cores)
    memory = report.memory(mode)
    available = resources.available_memory()
    if available is None or memory.total <= usable_memory(available):
        return memory
    fit = batch_fit(report, usable_memory(available), optimizer=optimizer if mode == "train" else None, mode=mode)
    if not fit.batch:
        fix = f"not even one volume fits ({fit.explanation})"
    elif fix is None:
        fix = f"lower {batch_flag} (the largest batch that fits is {fit.batch}: volnet.analysis.batch_fit)"
    else:
        fix = f"{fix} (the largest batch that fits is {fit.batch})"
    raise ResourceError(f"{what} at batch {batch} needs {describe_bytes(memory.total)}, {machine_has(available)}; "
                        f"{fix}")


def _report(net, dtype, optimizer, input_shape, cores) -> Report:
    if isinstance(net, Report):
        return net
    return analyze(net, dtype=dtype, optimizer=optimizer, input_shape=input_shape, cores=cores)


__all__ = [
    "analyze", "analyze_layers", "Report", "LayerRow", "Memory", "max_batch_size", "batch_fit",
    "BatchFit", "parse_budget", "format_bytes", "bytes_per_value", "ReceptiveField", "receptive_fields",
    "compare_stack", "StackComparison", "lint", "Lint", "RULES", "require_fit",
]
