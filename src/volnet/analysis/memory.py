"""Memory: what a network needs to train or to predict, from shapes alone.

The notes' three sources of memory, each a term of :class:`Memory` (in
bytes, for a batch of N volumes)::

    activations  training: every array the layers keep for backprop (their
                 caches), plus the output, at the end of the forward pass;
                 inference: the largest input + output pair of one layer
                 (the notes: "only storing the current activations at any
                 layer and discarding the previous activations")
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

Units: bytes everywhere; text shows binary units first (MiB = 2**20 bytes,
GiB = 2**30), as the notes divide by 1024, with decimal ones (MB = 10**6,
GB = 10**9) beside them. Budgets are parsed the same way: ``"12GB"`` is
12 * 10**9 bytes, ``"12GiB"`` is 12 * 2**30.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..shapes import effective_extent
from .walk import Node

# NumPy reuses a temporary operand of ``a + b`` as the result when the
# temporary owns its data, nothing else refers to it, and it holds at least
# this many bytes (NPY_MIN_ELIDE_BYTES); both operands must have the same
# shape (a broadcast or a Python float operand prevents it, as measured).
ELIDE_BYTES = 256 * 1024



def step_temporaries(optimizer: str | None, itemsize: int) -> int:
    """Bytes per value of one parameter array that ``volnet.optim``'s update allocates at once.

    sgd and momentum: ``lr * v`` (one array); nesterov: ``momentum * v`` and
    ``lr * (...)`` (two); adagrad and rmsprop: ``lr * g``, ``sqrt(s)`` and
    ``sqrt(s) + eps`` (three); adam: the denominator ``sqrt(v)/c + eps`` and
    the step ``m * lr/(1 - b1**t)``, both updated in place (two).
    """
    return {"sgd": 1, "momentum": 1, "nesterov": 2, "adagrad": 3, "rmsprop": 3, "adam": 2}.get(
        optimizer or "sgd", 3) * itemsize

DTYPE_BYTES = {"float16": 2, "float32": 4, "float64": 8}


def bytes_per_value(dtype) -> int:
    """4 for ``"float32"``, 8 for float64, 2 for float16; any NumPy dtype by its itemsize."""
    name = getattr(dtype, "name", None) or (dtype if isinstance(dtype, str) else getattr(dtype, "__name__", None))
    if name in DTYPE_BYTES:
        return DTYPE_BYTES[name]
    import numpy as np

    return np.dtype(dtype).itemsize


# -- units ---------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_budget(budget) -> int:
    """Bytes from ``"12GB"`` (10**9 each), ``"1.5GiB"`` (2**30 each), ``"512MB"``, ``"64KiB"`` or an int.

    Units are case-insensitive: B, KB, MB, GB, TB (powers of 1000) and
    KiB, MiB, GiB, TiB (powers of 1024). A GPU sold as "12 GB" usually has
    12 GiB: write ``"12GiB"`` for that.

    Raises:
        ValueError: for anything else (a negative number, an unknown unit, a bool).
    """
    if isinstance(budget, bool):
        raise ValueError(f"memory budget must be bytes or a string like '12GB', got {budget!r}")
    if isinstance(budget, (int, float)):
        if not budget >= 0 or math.isinf(budget):
            raise ValueError(f"memory budget must be a non-negative number of bytes, got {budget!r}")
        return int(budget)
    match = _BUDGET.match(budget) if isinstance(budget, str) else None
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read the memory budget {budget!r}: write bytes (an int) or a number with a "
                         "unit, e.g. '12GB' (10**9 bytes each), '1.5GiB' (2**30), '512MB', '800MiB'")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_bytes(n: int) -> str:
    """``'58.1 MiB (60.9 MB)'``: binary units first, as the notes divide by 1024, decimal ones beside them."""
    def scaled(base, names):
        value, unit = float(n), names[0]
        for name in names[1:]:
            if abs(value) < base:
                break
            value, unit = value / base, name
        return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
    return f"{scaled(1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB'])} ({scaled(1000, ['B', 'kB', 'MB', 'GB', 'TB'])})"


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
                   optimizer=self.optimizer, total=self.total, peak_at=self.peak_at,
                   forward_peak=self.forward_peak, backward_peak=self.backward_peak,
                   kept_by=dict(self.kept_by), units="bytes")
        return out


# -- replaying the engine on byte counts ----------------------------------------

class _Heap:
    """Live arrays by id, with sizes and reference counts; records the peak of live bytes."""

    def __init__(self):
        self.size, self.refs, self.owns = {}, {}, {}
        self.live = self.peak = 0
        self.peak_at = ""
        self.where = ""
        self._ids = 0

    def new(self, nbytes: int, owns: bool = True) -> int:
        self._ids += 1
        self.size[self._ids], self.refs[self._ids], self.owns[self._ids] = int(nbytes), 1, owns
        self.live += int(nbytes)
        self.touch(0)
        return self._ids

    def ref(self, aid: int) -> int:
        self.refs[aid] += 1
        return aid

    def unref(self, aid) -> None:
        if aid is None:
            return
        self.refs[aid] -= 1
        if not self.refs[aid]:
            self.live -= self.size.pop(aid)
            del self.refs[aid], self.owns[aid]

    def touch(self, extra: int) -> None:
        """A moment at which ``extra`` transient bytes are alive on top of the live arrays."""
        if self.live + extra > self.peak:
            self.peak, self.peak_at = self.live + extra, self.where

    def elidable(self, aid) -> bool:
        return self.refs.get(aid) == 1 and self.owns[aid] and self.size[aid] >= ELIDE_BYTES


@dataclass(frozen=True)
class _Forward:
    """What one layer's forward pass allocates: private arrays ``(bytes, kept in training)``,
    its output (None: a view of the input), what its cache refers to, and transient bytes."""

    private: tuple = ()
    out: int | None = 0
    out_owns: bool = True
    keeps_input: bool = False
    keeps_output: bool = False
    transient: int = 0


@dataclass(frozen=True)
class _Backward:
    """Bytes alive on top of dout and the caches at the layer's peak (dx included), and dx (None: a view
    of dout). ``dx_contiguous`` is false for a view that skips padding, which the next CONV copies."""

    extra: int = 0
    dx: int | None = 0
    dx_contiguous: bool = True


# layers.base.forward_layers fuses a ReLU into the CONV or FC before it: the ReLU
# then rectifies that layer's output in place and keeps it as its cache.
FUSES_RELU = ("conv", "fc")
_FUSED_RELU = _Forward((), None, keeps_output=True)


class Engine:
    """Replays forward (and backward) passes of volnet's kernels on byte counts.

    Each layer kind has a plan that mirrors its kernel in ``volnet.ops``
    (named in :func:`_forward_plan` and :func:`_backward_plan`); the tests
    measure the real kernels with tracemalloc and hold these plans to them.
    """

    def __init__(self, batch: int, itemsize: int):
        self.N, self.b = int(batch), int(itemsize)
        self.heap = _Heap()
        self.caches: dict[str, list[int]] = {}  # layer path -> the arrays its cache refers to
        self.kept_by: dict[str, int] = {}
        self._attributed: set[int] = set()

    # forward ------------------------------------------------------------------
    def forward_path(self, nodes: list[Node], x: int, train: bool, workspace: bool = True) -> int:
        """The output of a path run on array ``x`` (one reference, owned by the caller).

        ``workspace=False`` leaves out every private and transient array: in
        inference that leaves the input + output pairs of the notes' rule.
        """
        x = self.heap.ref(x)
        previous = None
        for node in nodes:
            fused = node.row.kind == "relu" and previous in FUSES_RELU
            y = self.forward_node(node, x, train, workspace, fused)
            self.heap.unref(x)
            x, previous = y, node.row.kind
        return x

    def forward_node(self, node: Node, x: int, train: bool, workspace: bool, fused: bool = False) -> int:
        heap, row = self.heap, node.row
        heap.where = f"forward {row.path} ({row.kind})"
        if row.kind == "residual":
            body = self.forward_path(node.paths[0], x, train, workspace)
            short = self.forward_path(node.paths[1], x, train, workspace)
            heap.where = f"forward {row.path} ({row.kind})"
            for temp, other in ((body, short), (short, body)):  # body(x) + shortcut(x): a temporary is reused
                if heap.elidable(temp) and heap.size[temp] == heap.size[other]:
                    heap.unref(other)
                    return temp
            out = heap.new(self._bytes(row.output_shape))
            heap.unref(body)
            heap.unref(short)
            return out
        if row.kind == "concat":
            outs = [self.forward_path(path, x, train, workspace) for path in node.paths]
            heap.where = f"forward {row.path} ({row.kind})"
            out = heap.new(self._bytes(row.output_shape))
            for o in outs:
                heap.unref(o)
            return out
        plan = _FUSED_RELU if fused else _forward_plan(row, self.N, self.b, train)
        private = [heap.new(nbytes) for nbytes, _ in plan.private] if workspace else []
        out = heap.ref(x) if plan.out is None else heap.new(plan.out, plan.out_owns)
        if workspace:
            heap.touch(plan.transient)
        if train:
            cache = ([heap.ref(x)] if plan.keeps_input else []) + ([heap.ref(out)] if plan.keeps_output else [])
            cache += [heap.ref(p) for p, (_, kept) in zip(private, plan.private) if kept]
            self.caches[row.path] = cache
            self.kept_by[row.path] = 0
            for aid in cache:
                if aid not in self._attributed:
                    self._attributed.add(aid)
                    self.kept_by[row.path] += heap.size[aid]
        for p in private:
            heap.unref(p)
        return out

    # backward -----------------------------------------------------------------
    def backward_path(self, nodes: list[Node], dout: int, input_grad: bool, contiguous: bool = True):
        """Gradient w.r.t. the path's input: ``(array id or None, whether the view is contiguous)``."""
        d = self.heap.ref(dout)
        for index in range(len(nodes) - 1, -1, -1):
            dx, dx_contiguous = self.backward_node(nodes[index], d, input_grad or index > 0, contiguous)
            self.heap.unref(d)
            d, contiguous = dx, dx_contiguous
        return d, contiguous

    def backward_node(self, node: Node, dout: int, input_grad: bool, contiguous: bool = True):
        heap, row = self.heap, node.row
        heap.where = f"backward {row.path} ({row.kind})"
        if row.kind in ("residual", "concat"):
            # Residual: both paths get dout, dx = dbody + dshortcut (named variables: no elision).
            # Concat: each branch gets its slice of dout (np.split: a view, strided when there are
            # several branches), dx = the sum of the branches' gradients.
            split = row.kind == "concat" and len(node.paths) > 1
            grads = [self.backward_path(path, dout, input_grad, contiguous and not split) for path in node.paths]
            heap.where = f"backward {row.path} ({row.kind})"
            dx = heap.new(self._bytes(row.input_shape)) if input_grad else None
            for d, _ in grads:
                heap.unref(d)
            return dx, True
        plan = _backward_plan(row, self.N, self.b, input_grad, contiguous)
        heap.touch(plan.extra)
        if not input_grad:
            dx = None
        elif plan.dx is None:
            dx = heap.ref(dout)
        else:
            dx = heap.new(plan.dx)
        for aid in self.caches.pop(row.path, []):
            heap.unref(aid)
        return dx, plan.dx_contiguous

    def _bytes(self, shape) -> int:
        return self.N * math.prod(shape) * self.b


def simulate(nodes: list[Node], input_shape, *, batch: int, itemsize: int, train: bool,
             workspace: bool = True, backward: bool = True) -> dict:
    """Replay one forward pass (and, in training, the backward pass) of ``nodes``.

    Returns bytes on top of the data batch (which the caller holds): ``kept``
    (alive at the end of the forward pass: caches and output), ``forward_peak``
    and ``backward_peak`` with where they happen (``forward_peak_at``,
    ``backward_peak_at``), and ``kept_by`` (cache bytes per layer path, an
    array kept by two layers counted for the first).
    """
    engine = Engine(batch, itemsize)
    heap = engine.heap
    data = heap.new(engine._bytes(input_shape))
    data_bytes = heap.size[data]
    heap.peak = heap.live
    out = engine.forward_path(nodes, data, train, workspace)
    result = {"kept": heap.live - data_bytes, "forward_peak": heap.peak - data_bytes,
              "forward_peak_at": heap.peak_at, "kept_by": engine.kept_by, "backward_peak": 0,
              "backward_peak_at": ""}
    if train and backward:
        heap.peak = 0
        heap.where = "backward"
        dscores = heap.new(heap.size[out])
        dx, _ = engine.backward_path(nodes, dscores, input_grad=False)
        heap.unref(dx)
        result["backward_peak"], result["backward_peak_at"] = heap.peak - data_bytes, heap.peak_at
    return result


# -- per-kernel plans --------------------------------------------------------------

def _conv_constants():
    """The im2col block size and shallow-input threshold of ``volnet.ops.conv`` (None where absent)."""
    from ..ops import conv

    return getattr(conv, "BLOCK_BYTES", None), getattr(conv, "SHALLOW_DEPTH", None)


def _geometry(row, N):
    from ..ops.window import geometry

    layer, kind = row.layer, row.kind
    if kind == "pool":
        return geometry((N, *row.input_shape), layer.F, layer.S, getattr(layer, "P", 0), 1,
                        fit=getattr(layer, "fit", None), pool=True)
    return geometry((N, *row.input_shape), layer.F, layer.S, layer.P, getattr(layer, "dilation", 1),
                    fit=getattr(layer, "fit", None))


def _padded(row, g, N):
    """``(padded shape, whether pad_spatial copies the input, whether it returns a cropped view)``."""
    H, W, D = row.input_shape
    top, bottom, left, right = g.pads
    shape = (N, H + top + bottom, W + left + right, D)
    copies = any(p > 0 for p in g.pads)
    cropped = any(p < 0 for p in g.pads) and not copies
    return shape, copies, cropped


def _windows_contiguous(padded_shape, cropped: bool, row, g) -> bool:
    """Whether ``windows(xp, g)`` is C-contiguous, so that im2col needs no copy (1x1 filters, S=1)."""
    N, Hp, Wp, D = padded_shape
    base = (row.input_shape[0], row.input_shape[1]) if cropped else (Hp, Wp)
    s_w = D
    s_h = base[1] * D
    s_n = base[0] * s_h
    (Ho, Wo), (Fh, Fw), (Sh, Sw), (dh, dw) = g.out_hw, g.size, g.stride, g.dilation
    shape = (N, Ho, Wo, Fh, Fw, D)
    strides = (s_n, s_h * Sh, s_w * Sw, s_h * dh, s_w * dw, 1)
    expected = 1
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


def _blocks(N: int, per_image: int, block_bytes) -> int:
    """Images per block in ``volnet.ops.conv._image_blocks`` (the whole batch without blocking)."""
    if block_bytes is None:
        return N
    return max(1, min(N, block_bytes // max(1, per_image)))


def _pass_workers(multiply_adds: int, N: int) -> int:
    """Threads a network pass splits a kernel over (``volnet.ops.threads.pass_workers`` within a pass)."""
    from ..ops import threads

    return threads.worth(multiply_adds, N, threads.cores())


def _parts(N: int, workers: int) -> list[int]:
    """The sizes of the parts ``volnet.ops.threads.split`` cuts a batch of N into."""
    from ..ops import threads

    return [stop - start for start, stop in threads.parts(N, workers)]


def _split_blocks(N: int, per_image: int, block_bytes, workers: int) -> int:
    """Images in the block buffers of all threads at once: each part of the batch has its own blocks.

    This counts every part's blocks as alive together, as they are when the
    threads run side by side (a thread that has not started when another
    finishes leaves less).
    """
    return sum(_blocks(n, per_image, block_bytes) for n in _parts(N, workers))


def _winograd_workers(N: int, out_hw, depth: int, filters: int) -> int:
    from ..ops import winograd

    return winograd.workers(N, out_hw, depth, filters, network_pass=True)


def _winograd(g, depth: int, filters: int, b: int, weight_gradient: bool = False) -> bool:
    """Whether ``volnet.ops.conv`` takes Winograd for this correlation (and this dtype size)."""
    from ..ops import winograd

    dtype = {4: np.float32, 8: np.float64}.get(b)
    if dtype is None:
        return False
    if weight_gradient:
        workers = _winograd_workers(g.in_shape[0], g.out_hw, depth, filters)
        return winograd.applies_to_weight_gradient(g, depth, filters, dtype, workers)
    return winograd.applies(g, depth, dtype)


def _winograd_workspace(out_hw, depth: int, filters: int, N: int, b: int, weight_gradient: bool = False) -> int:
    """ops.winograd's arrays beside its result: each thread's block of transformed tiles (V and M, or V and
    dM) and scratch rows of the transforms; the transformed filters U (correlate), or each thread's dU and
    one block's share of it, and the ones that sum db (weight_gradient)."""
    from ..ops import winograd

    Ht, Wt = winograd.tiles(out_hw)
    Wp = out_hw[1] + 2
    per_image = winograd.bytes_per_image(out_hw, depth, filters, b)
    workers = len(_parts(N, _winograd_workers(N, out_hw, depth, filters)))
    tiles = _split_blocks(N, per_image, _conv_constants()[0], workers) * per_image
    rows = 4 * (Wp + 1) * depth + Wp * depth
    if weight_gradient:
        scratch = rows + 4 * 2 * Wt * filters + out_hw[1] * filters + 2 * 16 * depth * filters
        return tiles + (workers * scratch + N * out_hw[0] * out_hw[1]) * b
    return tiles + (workers * (rows + 2 * 4 * Wt * filters) + 16 * depth * filters) * b


def _forward_plan(row, N: int, b: int, train: bool) -> _Forward:
    kind, layer = row.kind, row.layer
    n_in, n_out = N * math.prod(row.input_shape), N * math.prod(row.output_shape)
    if kind in ("conv", "local"):
        # ops.conv.conv_forward / ops.local.local_forward: xp = pad_spatial(x) (a copy when padded), kept
        # in the cache; im2col rows (conv: a block of images at a time, plus a column of ones that carries
        # the bias; local: the whole batch); out.
        g = _geometry(row, N)
        padded, copies, cropped = _padded(row, g, N)
        (Ho, Wo), (Fh, Fw), D = g.out_hw, g.size, row.input_shape[2]
        rows = 0
        if kind == "conv" and _winograd(g, D, row.output_shape[2], b):  # ops.winograd.correlate
            rows = _winograd_workspace(g.out_hw, D, row.output_shape[2], N, b)
        elif not _windows_contiguous(padded, cropped, row, g):
            columns = Fh * Fw * D + (kind == "conv")
            per_image = Ho * Wo * columns * b
            if kind == "conv":  # ops.conv._correlate: each thread's block
                workers = _pass_workers(N * Ho * Wo * row.output_shape[2] * Fh * Fw * D, N)
                rows = per_image * _split_blocks(N, per_image, _conv_constants()[0], workers)
            else:
                rows = per_image * N
        private = ((math.prod(padded) * b, True),) if copies else ()
        return _Forward(private, n_out * b, out_owns=kind == "local", keeps_input=not copies, transient=rows)
    if kind == "pool":
        # ops.pool.pool_forward: xp (a copy when padded); max: out, switches (kept), a bool and a code
        # array per tap; avg: out, added in place; l2: out and a squared tap, xp and out kept.
        g = _geometry(row, N)
        padded, copies, _ = _padded(row, g, N)
        mode = getattr(layer, "mode", "max")
        xp = ((math.prod(padded) * b, mode == "l2"),) if copies else ()
        if mode == "max" and not train:  # no switches: a running maximum in place
            return _Forward(xp, n_out * b)
        if mode == "max":
            code = 1 if math.prod(g.size) < 256 else 8
            return _Forward(xp + ((n_out * code, True),), n_out * b, transient=n_out * (1 + code))
        if mode == "l2":
            return _Forward(xp, n_out * b, keeps_input=not copies, keeps_output=True, transient=n_out * b)
        return _Forward(xp, n_out * b)
    if kind == "global_pool":  # pool_forward "avg" with the whole input as the window: a tiny output
        return _Forward((), n_out * b)
    if kind == "fc":  # ops.dense.fc_forward: out = flat @ w (+ b in place); the cache keeps x
        return _Forward((), n_out * b, keeps_input=True)
    if kind == "relu":  # relu_forward: out = max(x, 0), kept as the cache
        return _Forward((), n_out * b, keeps_output=True)
    if kind == "flatten":  # a reshape: a view of the input
        return _Forward((), None)
    if kind == "batchnorm":
        # training: x_hat = x - mean (kept), x_hat * x_hat for the variance, then gamma * x_hat + beta:
        # a temporary and the output (broadcast operands are not elided). Inference: x * scale + shift.
        if train:
            return _Forward(((n_in * b, True),), n_out * b, transient=n_out * b)
        return _Forward((), n_out * b, transient=n_out * b)
    if kind == "dropout":
        # training: rng.random (float64, 8 bytes) >= p gives a bool mask, then mask = keep.astype * scale
        # (kept) and out = x * mask; inference: the identity.
        if not train:
            return _Forward((), None)
        return _Forward(((n_in * b, True),), n_out * b, transient=max(9 * n_in - 2 * n_in * b, n_in))
    return _Forward((), n_out * b, keeps_input=True)  # a layer analysis does not know: a guess


def _unpad(g, dxp: int, n_in: int, b: int) -> tuple[int, int, bool]:
    """``window.unpad_spatial`` of a gradient buffer of ``dxp`` bytes: ``(bytes it allocates, dx bytes,
    whether dx is contiguous)``. A view, strided unless there is no padding; after a crop, a new
    full-size array."""
    if any(p < 0 for p in g.pads):
        return n_in * b, n_in * b, True
    return 0, dxp, not any(g.pads)


def _backward_plan(row, N: int, b: int, input_grad: bool, dout_contiguous: bool = True) -> _Backward:
    kind, layer = row.kind, row.layer
    n_in, n_out = N * math.prod(row.input_shape), N * math.prod(row.output_shape)
    grads = row.params * b  # the new gradient arrays, alive before they replace the previous step's
    if kind == "conv":
        return _conv_backward(row, N, b, input_grad, grads, dout_contiguous)
    if kind == "local":
        # ops.local.local_backward: dout.reshape (a copy when dout is strided); the whole im2col copy for
        # dw; dx: drows (N, H2*W2, F*F*D) and the padded dxp that col2im fills.
        g = _geometry(row, N)
        padded, _, _ = _padded(row, g, N)
        (Ho, Wo), (Fh, Fw), D = g.out_hw, g.size, row.input_shape[2]
        rows = N * Ho * Wo * Fh * Fw * D * b
        grads += 0 if dout_contiguous else n_out * b
        dw_phase = rows + grads
        if not input_grad:
            return _Backward(dw_phase, 0)
        dxp = math.prod(padded) * b
        full, dx, contiguous = _unpad(g, dxp, n_in, b)
        return _Backward(max(dw_phase, grads + rows + dxp, grads + dxp + full), dx, contiguous)
    if kind == "pool":
        # ops.pool.pool_backward: dxp zeros of the padded input (dx is a view of it); max: a bool per
        # output and, for overlapping windows, a share per output; avg: dout / (F*F); l2: the scaled
        # dout and a share per tap.
        g = _geometry(row, N)
        padded, _, _ = _padded(row, g, N)
        dxp = math.prod(padded) * b
        mode = getattr(layer, "mode", "max")
        if mode == "max":
            overlapping = any(f > s for f, s in zip(g.size, g.stride))
            extra = n_out * (1 + (b if overlapping else 0))
        elif mode == "avg":
            extra = n_out * b
        else:
            extra = 2 * n_out * b
        full, dx, contiguous = _unpad(g, dxp, n_in, b)
        return _Backward(dxp + max(extra, full), dx, contiguous)
    if kind == "global_pool":
        return _Backward(n_in * b + n_out * b, n_in * b)
    if kind == "fc":  # fc_backward: dx = dout @ w.T (a view in the input's shape), dw = x.T @ dout
        return _Backward(grads + (n_in * b if input_grad else 0), n_in * b)
    if kind == "relu":  # dout * (out > 0): a bool per value and dx
        return _Backward(n_in + n_in * b, n_in * b)
    if kind == "flatten":  # dout.reshape: a view, or a copy of a strided dout
        return _Backward(0, None) if dout_contiguous else _Backward(n_in * b, n_in * b)
    if kind == "batchnorm":
        # batchnorm_backward: dout * x_hat for dgamma; then m * dout - dbeta, x_hat * dgamma, their
        # difference (NumPy reuses the first temporary when it is large) and dx = coef * (...).
        volumes = 2 if n_in * b >= ELIDE_BYTES else 3
        return _Backward(grads + volumes * n_in * b, n_in * b)
    if kind == "dropout":  # dout * mask
        return _Backward(n_in * b, n_in * b)
    return _Backward(grads + n_in * b, n_in * b)


def _conv_backward(row, N, b, input_grad, grads, dout_contiguous=True) -> _Backward:
    """ops.conv.conv_backward: dw (and db, from the rows' column of ones) from im2col rows rebuilt block by
    block; dx block by block (shallow inputs), as a convolution of the padded dout with the flipped filters
    (deep inputs, stride 1) or by col2im into phase buffers of the padded input (deep inputs, strided).
    3x3 stride-1 layers take ops.winograd for dx (deep dout) and for dw (enough filters) instead.

    ``dout.reshape(-1, K)`` copies a strided dout (the gradient of a padded CONV above), and the copy
    lives through the whole backward pass; dx's blocks reshape dout again.
    """
    block_bytes, shallow = _conv_constants()
    g = _geometry(row, N)
    padded, _, cropped = _padded(row, g, N)
    (Ho, Wo), (Fh, Fw), (Sh, Sw), D = g.out_hw, g.size, g.stride, row.input_shape[2]
    K = row.output_shape[2]
    weights = (Fh * Fw * D + 1) * K * b  # dw and db in one array
    dout_copy = 0 if dout_contiguous else N * Ho * Wo * K * b
    grads += dout_copy
    workers = _pass_workers(N * Ho * Wo * K * Fh * Fw * D, N)  # the im2col kernels' threads
    if _winograd(g, D, K, b, weight_gradient=True):  # ops.winograd.weight_gradient (db included)
        phases = [grads + _winograd_workspace(g.out_hw, D, K, N, b, weight_gradient=True)]
    else:
        # each thread's part of the batch: its rows, its dw (and db), and one block's share of it
        rows, partials = 0, 0
        contiguous = _windows_contiguous(padded, cropped, row, g)
        for n in _parts(N, workers):
            blocks = 1
            if not contiguous:
                per_image = Ho * Wo * (Fh * Fw * D + 1) * b
                step = _blocks(n, per_image, block_bytes)
                rows, blocks = rows + step * per_image, -(-n // step)
            partials += weights * (2 if blocks > 1 else 1)  # np.add(dw, part, out=dw)
        phases = [grads + rows + partials - weights, grads + N * Ho * Wo * b]
    if not input_grad:
        return _Backward(max(phases), 0)
    _, Hp, Wp, _ = padded
    Hs, Ws = -(-Hp // Sh), -(-Wp // Sw)
    strided = (Sh, Sw) != (1, 1)
    if shallow is not None and D < shallow:
        dxp = math.prod(padded) * b
        blocks = _split_blocks(N, Ho * Wo * Fh * Fw * D * b, block_bytes, workers)  # a block per thread
        # per block: the shares (W @ dout.T), the phase buffers, their interleaved copy, dout's block copy
        per_image = Ho * Wo * Fh * Fw * D + 2 * Sh * Sw * Hs * Ws * D + (0 if dout_contiguous else Ho * Wo * K)
        per_block = blocks * per_image * b
        phases.append(grads + dxp + per_block)
        dx, whole = dxp, True
    elif not strided:
        # conv_backward_input_flipped: dout padded to (H + eh - 1, W + ew - 1) (a copy where any side is
        # padded, not only cropped), its im2col rows a block at a time, and dx itself (no unpadding)
        H, W = row.input_shape[:2]
        (eh, ew), (top, _, left, _) = map(effective_extent, g.size, g.dilation), g.pads
        sides = (eh - 1 - top, H + top - Ho, ew - 1 - left, W + left - Wo)
        dout_padded = N * (H + eh - 1) * (W + ew - 1) * K * b if max(sides) > 0 else 0
        flipped = 0
        if _winograd(g, K, D, b):  # the flipped filters are 3x3 stride 1 too: ops.winograd.correlate
            flipped = _winograd_workspace(row.input_shape[:2], K, D, N, b)
        elif (Fh, Fw) != (1, 1):
            per_image = H * W * Fh * Fw * K * b
            flipped_workers = _pass_workers(N * H * W * D * Fh * Fw * K, N)  # ops.conv._correlate's threads
            flipped = _split_blocks(N, per_image, block_bytes, flipped_workers) * per_image
        dx = N * H * W * D * b
        phases.append(grads + dout_padded + flipped + dx)
        return _Backward(max(phases), dx, True)
    else:
        buffers = Sh * Sw * N * Hs * Ws * D * b
        blocks = _split_blocks(N, Ho * Wo * (K + D) * b, block_bytes, workers)  # each thread's share buffer
        share = blocks * Ho * Wo * (D + (0 if dout_contiguous else K)) * b
        phases.append(grads + buffers + share)
        dx, whole = buffers, True
        if strided:  # interleave_phases copies, after the threads have freed their share buffers
            dx = N * Hs * Sh * Ws * Sw * D * b
            phases.append(grads + buffers + dx)
            whole = (Hs * Sh, Ws * Sw) == (Hp, Wp)
    full, dx, contiguous = _unpad(g, dx, N * math.prod(row.input_shape), b)
    phases.append(grads + dx + full)
    return _Backward(max(phases), dx, contiguous and whole)


# -- the memory terms ----------------------------------------------------------------

def memory(report, mode: str = "train", batch: int | None = None, optimizer: str | None = None,
           dtype=None) -> Memory:
    """The :class:`Memory` terms of an analysed network (see :meth:`volnet.analysis.Report.memory`)."""
    if mode not in ("train", "inference"):
        raise ValueError(f"mode must be 'train' or 'inference', got {mode!r}")
    batch = report.batch if batch is None else int(batch)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    optimizer = report.optimizer if optimizer is None else optimizer
    dtype = report.dtype if dtype is None else dtype
    b = bytes_per_value(dtype)
    train = mode == "train"
    multiplier = cache_multiplier(optimizer) if train else 0
    params = report.total_params * b
    buffers = sum(2 * row.output_shape[-1] for row in report.rows if row.kind == "batchnorm") * b
    data = batch * math.prod(report.input_shape) * b
    full = simulate(report.nodes, report.input_shape, batch=batch, itemsize=b, train=train)
    if train:
        activations = full["kept"]
        step = step_temporaries(optimizer, b) * max((s for row in report.rows for s in row.param_sizes), default=0)
        # during the optimizer step the caches are gone; the caller still holds the scores and their gradient
        outputs = 2 * batch * math.prod(report.output_shape) * b if report.rows else 0
        candidates = [(full["forward_peak"], full["forward_peak_at"]),
                      (full["backward_peak"], full["backward_peak_at"]), (step + outputs, f"{optimizer or 'sgd'} step")]
        peak, peak_at = max(candidates, key=lambda c: c[0])
    else:
        pairs = simulate(report.nodes, report.input_shape, batch=batch, itemsize=b, train=False, workspace=False)
        activations = pairs["forward_peak"]
        peak, peak_at = full["forward_peak"], full["forward_peak_at"]
    return Memory(
        mode=mode, batch=batch, dtype=_dtype_name(dtype), bytes_per_value=b, optimizer=optimizer if train else None,
        params=params, grads=params if train else 0, optimizer_cache=multiplier * params, buffers=buffers,
        data=data, activations=activations, workspace=max(0, peak - activations), peak_at=peak_at,
        forward_peak=full["forward_peak"], backward_peak=full["backward_peak"],
        kept_by={k: v for k, v in full["kept_by"].items() if v} if train else {},
    )


def cache_multiplier(optimizer: str | None) -> int:
    """Per-parameter state arrays of the named optimizer (``volnet.optim.cache_multiplier``); None: 0."""
    if optimizer is None:
        return 0
    from ..optim import cache_multiplier as multiplier

    return multiplier(optimizer)


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or (dtype if isinstance(dtype, str) else getattr(dtype, "__name__", str(dtype)))


def notes_activation_values(report) -> int:
    """The notes' count, per volume: the input plus every CONV, LC, POOL, FC output and Residual/Concat merge."""
    counted = ("conv", "local", "pool", "global_pool", "fc", "residual", "concat")
    return math.prod(report.input_shape) + sum(row.activations for row in report.rows if row.kind in counted)


# -- fitting a budget ----------------------------------------------------------------

@dataclass(frozen=True)
class BatchFit:
    """The largest batch that fits a budget, and why: see :func:`fit_batch`."""

    batch: int
    budget: int
    fixed: int
    total: int
    mode: str
    explanation: str

    def __int__(self) -> int:
        return self.batch


def fit_batch(report, budget, *, optimizer: str | None = None, dtype=None, mode: str = "train") -> BatchFit:
    """The notes' "decrease the batch size until it fits": the largest N whose :class:`Memory` total fits.

    ``report`` is a :class:`~volnet.analysis.Report`; :func:`volnet.analysis.batch_fit` takes a network.

    ``fixed`` is what no batch size changes (parameters, gradients,
    optimizer cache, buffers); ``total`` the memory at the batch found.
    A batch of 0 means even one volume does not fit; ``explanation`` says
    whether the parameters alone already exceed the budget.
    """
    limit = parse_budget(budget)

    def at(n):
        return memory(report, mode, n, optimizer, dtype)

    one = at(1)
    fixed = one.params + one.grads + one.optimizer_cache + one.buffers
    if one.total > limit:
        if fixed > limit:
            why = (f"even the parameters do not fit: {format_bytes(fixed)} for weights"
                   f"{', gradients and optimizer cache' if mode == 'train' else ''} against a budget of "
                   f"{format_bytes(limit)}; a smaller network (fewer or smaller FC layers hold most weights), "
                   "a smaller dtype, or an optimizer with less state (sgd) is needed")
        else:
            why = (f"the parameters take {format_bytes(fixed)} but one volume needs {format_bytes(one.total - fixed)} "
                   f"more, {format_bytes(one.total)} in all, against a budget of {format_bytes(limit)}")
        return BatchFit(0, limit, fixed, one.total, mode, why)
    low, high = 1, 2
    while at(high).total <= limit:
        low, high = high, high * 2
        if high > 2**40:
            break
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if at(mid).total <= limit else (low, mid)
    best = at(low)
    why = (f"batch {low} needs {format_bytes(best.total)} ({format_bytes(fixed)} fixed, "
           f"{format_bytes(best.total - fixed)} for activations, workspace and data) within "
           f"{format_bytes(limit)}; batch {low + 1} needs {format_bytes(at(low + 1).total)}")
    return BatchFit(low, limit, fixed, best.total, mode, why)
