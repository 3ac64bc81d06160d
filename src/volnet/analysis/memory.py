"""Memory: what a network needs to train or to predict, from shapes alone.

The notes' three sources of memory, each a term of :class:`Memory` (in
bytes, for a batch of N volumes)::

    activations  training: every array the layers keep for backprop (their
                 caches), plus the output, at the end of the forward pass;
                 inference: the largest input + output pair of one layer
                 (the notes: "only storing the current activations at any
                 layer and discarding the previous activations"), of the
                 layers as the inference plan runs them: a max pool that a
                 CONV pools in its output pass leaves no CONV output
    workspace    transient arrays on top of that at the moment of the peak:
                 im2col rows, padded copies, the gradient volumes of the
                 backward pass, the optimizer's temporaries
    params       the weights; grads (training) the same again;
    optimizer    the step cache, ``cache_multiplier * params`` (sgd 0;
                 momentum, nesterov, adagrad, rmsprop 1; adam 2)
    buffers      BatchNorm's running averages (2 per depth slice)
    data         the input batch, ``N * H * W * D`` values

``total`` is their sum, the peak a training step (or a prediction) reaches.
Values are counted in the network's dtype (float32: 4 bytes, float64: 8,
float16: 2); MaxPool's switches are 1 byte each (uint8).

Two counts of activations, because they answer different questions:

* **The notes' count** (:func:`notes_activation_values`): the input plus
  every CONV, LC, POOL and FC output (and every Residual/Concat merge), one
  value each; elementwise layers (RELU, BatchNorm, Dropout) and Flatten are
  taken as in place. For VGG-16 that is 15,237,608 values per image (58.1
  MiB in float32), the sum of the notes' own per-layer breakdown (the
  CS231n notes print "24M" for it: an arithmetic slip).
* **The engine's count** (:class:`Memory`), what volnet's kernels really
  hold, found by replaying a training step on byte counts alone: CONV keeps
  its zero-padded input (a copy when P > 0, the input itself when P = 0),
  RELU keeps its output, MaxPool keeps its switches (uint8), FC keeps its
  input, BatchNorm its normalised input, Dropout its mask; an array kept
  by two layers (a RELU output that the next unpadded CONV keeps too) is
  counted once. ``tests/analysis/test_memory.py`` checks these figures
  against tracemalloc's measurement of real forward and backward passes.

Where each part lives: the units in :mod:`~volnet.analysis.units`, the
replay in :mod:`~volnet.analysis.replay`, what each kernel allocates beside
the kernel (``volnet.ops``, see :mod:`volnet.ops.workspace`), the budget
search in :mod:`~volnet.analysis.budget`; this module composes the terms.
The workspace depends on the cores a network pass splits its kernels over
(each thread has its own blocks): ``cores`` is an argument, the analysed
machine's by default (:func:`volnet.analysis.analyze`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .replay import simulate
from .units import bytes_per_value, cache_multiplier, dtype_name, format_bytes, step_temporaries

# -- the result ----------------------------------------------------------------

@dataclass(frozen=True)
class Memory:
    """Bytes a training step (``mode="train"``) or a prediction (``"inference"``) needs; see the module docstring."""

    mode: str
    batch: int
    dtype: str
    bytes_per_value: int
    optimizer: str | None
    params: int
    grads: int
    optimizer_cache: int
    buffers: int
    data: int
    activations: int
    workspace: int
    peak_at: str
    forward_peak: int
    backward_peak: int
    kept_by: dict = field(default_factory=dict, compare=False)

    @property
    def total(self) -> int:
        return (self.params + self.grads + self.optimizer_cache + self.buffers + self.data
                + self.activations + self.workspace)

    def terms(self) -> list[tuple[str, int, str]]:
        """``(name, bytes, what it is)`` for every term, in the order the text shows them."""
        kept = ("caches kept for backprop + the output, end of forward" if self.mode == "train"
                else "largest input + output pair of one layer")
        return [
            ("activations", self.activations, kept),
            ("workspace", self.workspace, f"transient at the peak ({self.peak_at})"),
            ("params", self.params, "weights and biases"),
            ("grads", self.grads, "one per parameter" if self.mode == "train" else "none in inference"),
            ("optimizer", self.optimizer_cache,
             f"{self.optimizer} step cache" if self.mode == "train" else "none in inference"),
            ("buffers", self.buffers, "BatchNorm running averages"),
            ("data", self.data, f"input batch of {self.batch}"),
        ]

    def text(self) -> str:
        lines = [f"memory, {self.mode}, batch {self.batch}, {self.dtype} ({self.bytes_per_value} bytes/value):"]
        for name, value, what in self.terms():
            if value or name in ("activations", "params", "data"):
                lines.append(f"  {name:<12}{format_bytes(value):>28}   {what}")
        lines.append(f"  {'total':<12}{format_bytes(self.total):>28}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = {name: value for name, value, _ in self.terms()}
        out.update(mode=self.mode, batch=self.batch, dtype=self.dtype, bytes_per_value=self.bytes_per_value,
                   optimizer_name=self.optimizer, total=self.total, peak_at=self.peak_at,
                   forward_peak=self.forward_peak, backward_peak=self.backward_peak,
                   kept_by=dict(self.kept_by), units="bytes")
        return out


# -- the memory terms ----------------------------------------------------------------

def memory(report, mode: str = "train", batch: int | None = None, optimizer: str | None = None,
           dtype=None, cores: int | None = None) -> Memory:
    """The :class:`Memory` terms of an analysed network (see :meth:`volnet.analysis.Report.memory`)."""
    if mode not in ("train", "inference"):
        raise ValueError(f"mode must be 'train' or 'inference', got {mode!r}")
    batch = report.batch if batch is None else int(batch)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    optimizer = report.optimizer if optimizer is None else optimizer
    dtype = report.dtype if dtype is None else dtype
    cores = report.cores if cores is None else int(cores)
    b = bytes_per_value(dtype)
    train = mode == "train"
    multiplier = cache_multiplier(optimizer) if train else 0
    params = report.total_params * b
    # frozen layers (layer.trainable): no optimizer state; the frozen first layers no gradients and no caches
    frozen, no_grads, prefix = _frozen_values(report)
    buffers = sum(row.layer.buffer_values(row.input_shape) for row in report.rows) * b
    data = batch * math.prod(report.input_shape) * b
    full = simulate(report.nodes, report.input_shape, batch=batch, itemsize=b, train=train, cores=cores,
                    frozen=prefix)
    if train:
        activations = full["kept"]
        step = step_temporaries(optimizer, b) * max((s for row in report.rows for s in row.param_sizes), default=0)
        # during the optimizer step the caches are gone; the caller still holds the scores and their gradient
        outputs = 2 * batch * math.prod(report.output_shape) * b if report.rows else 0
        candidates = [(full["forward_peak"], full["forward_peak_at"]),
                      (full["backward_peak"], full["backward_peak_at"]), (step + outputs, f"{optimizer or 'sgd'} step")]
        peak, peak_at = max(candidates, key=lambda c: c[0])
    else:
        pairs = simulate(report.nodes, report.input_shape, batch=batch, itemsize=b, train=False, cores=cores,
                         workspace=False)
        activations = pairs["forward_peak"]
        peak, peak_at = full["forward_peak"], full["forward_peak_at"]
    return Memory(
        mode=mode, batch=batch, dtype=dtype_name(dtype), bytes_per_value=b, optimizer=optimizer if train else None,
        params=params, grads=params - no_grads * b if train else 0,
        optimizer_cache=multiplier * (params - frozen * b), buffers=buffers,
        data=data, activations=activations, workspace=max(0, peak - activations), peak_at=peak_at,
        forward_peak=full["forward_peak"], backward_peak=full["backward_peak"],
        kept_by={k: v for k, v in full["kept_by"].items() if v} if train else {},
    )


def _frozen_values(report) -> tuple[int, int, int]:
    """``(parameters of frozen layers, parameters of the frozen first layers, how many those are)``: the
    optimizer keeps no state for the first, and the second run as in inference, with no gradient
    (``Sequential.frozen_prefix``)."""
    from ..layers.base import frozen_prefix

    top = [row for row in report.rows if row.depth == 0]
    layers = [row.layer for row in top]
    if None in layers or all(layer.trainable for layer in layers) or len(top) != len(report.nodes):
        return 0, 0, 0
    count = frozen_prefix(layers)
    prefix = {row.path for row in top[:count]}
    frozen = {row.path for row in top if not row.layer.trainable}

    def values(paths):
        return sum(row.params for row in report.rows if row.path.split(".")[0] in paths)

    return values(frozen), values(prefix), count


def notes_activation_values(report) -> int:
    """The notes' count, per volume: the input plus every CONV, LC, POOL, FC output and Residual/Concat merge."""
    return math.prod(report.input_shape) + sum(row.activations for row in report.rows if row.layer.counted_in_notes)
