"""Replay a training step (or a prediction) on byte counts alone, to find its memory peak.

The engine walks the tree of :class:`~volnet.analysis.walk.Node` as
``volnet.net`` runs the layers, keeping every live array as a byte count
with a reference count (:class:`Heap`). What each layer allocates it does
not know: it asks the layer (:meth:`volnet.layers.Layer.forward_workspace`,
:meth:`~volnet.layers.Layer.backward_workspace`), which asks the workspace
function beside its kernel in ``volnet.ops``. Only what the containers do
is written here: Residual adds its paths (NumPy reusing a temporary), Concat
stacks its branches. A ReLU fused into the CONV or FC before it
(:func:`volnet.layers.paths.fused_pair`, as ``forward_layers`` fuses them)
allocates nothing of its own, nor, in inference, a BatchNorm after a CONV and
its ReLU (:func:`volnet.layers.paths.fused_affine`), nor in backward a ReLU whose
backward the POOL above it runs (:func:`volnet.layers.paths.fused_backward_pair`); in a prediction
(an inference plan) a max pool that the CONV below it pools in its own output pass
(:func:`volnet.layers.inference.pooled_size`, where the CONV's plan says so: ``ForwardWorkspace.pooled``).

``tests/analysis/test_memory.py`` holds the results to tracemalloc's
measurement of real forward and backward passes.
"""

from __future__ import annotations

import math

from ..layers.inference import pooled_size
from ..layers.paths import fused_affine, fused_backward_pair, fused_groups, fused_pair, fused_rectifier
from ..ops.workspace import ELIDE_BYTES, Workload
from .walk import Node


class Heap:
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
        """Whether NumPy would reuse this temporary as the result of an add (see ``ELIDE_BYTES``)."""
        return self.refs.get(aid) == 1 and self.owns[aid] and self.size[aid] >= ELIDE_BYTES


class Engine:
    """Replays forward (and backward) passes of a network's layers on byte counts, for a batch of
    ``batch`` values of ``itemsize`` bytes whose kernels split over ``cores``; ``plan``: forward passes run as
    an inference plan does (``Sequential.forward`` in inference), max pools fused into CONVs."""

    def __init__(self, batch: int, itemsize: int, cores: int, plan: bool = False):
        self.N, self.b, self.cores, self.plan = int(batch), int(itemsize), int(cores), plan
        self.heap = Heap()
        self.caches: dict[str, list[int]] = {}  # layer path -> the arrays its cache refers to
        self.kept_by: dict[str, int] = {}
        self._attributed: set[int] = set()

    def _work(self, row, train: bool) -> Workload:
        return Workload(row.input_shape, row.output_shape, self.N, self.b, self.cores, train, row.params)

    # forward ------------------------------------------------------------------
    def forward_path(self, nodes: list[Node], x: int, train: bool, workspace: bool = True) -> int:
        """The output of a path run on array ``x`` (one reference, owned by the caller).

        ``workspace=False`` leaves out every private and transient array: in
        inference that leaves the input + output pairs of the notes' rule.
        """
        x = self.heap.ref(x)
        previous, absorbed = None, False
        pools = self._pools_in_conv(nodes, train)
        for index, node in enumerate(nodes):
            layer = node.row.layer
            if index in pools.values():  # a max pool the CONV below it already applied
                y, absorbed = self.heap.ref(x), False
            elif previous is not None and fused_affine(previous, layer, train, None):
                y, absorbed = self.heap.ref(x), True  # a BatchNorm applied in the CONV's output pass, in place
            else:
                rectifies = absorbed and fused_rectifier(layer)  # the ReLU after it, there too
                fused = previous is not None and (fused_pair(previous, layer) or rectifies)
                pool = nodes[pools[index]].row.layer.fused_pool_size if index in pools else 1
                y, absorbed = self.forward_node(node, x, train, workspace, fused, pool), False
            self.heap.unref(x)
            x, previous = y, layer
        return x

    def _pools_in_conv(self, nodes: list[Node], train: bool) -> dict:
        """``{index of a CONV's node: index of the max pool's node}`` for each max pool that the CONV pools in its
        output pass: in an inference plan (:func:`volnet.layers.inference.pooled_size`), where its plan does."""
        if train or not self.plan:
            return {}
        layers = [node.row.layer for node in nodes]
        where = {id(layer): index for index, layer in enumerate(layers)}
        pools = {}
        for layer, _, _, pool in fused_groups(layers, False, None, pools=True):
            index = where[id(layer)]
            size = pooled_size(layer, pool, nodes[index].row.output_shape)
            if size and layer.forward_workspace(self._work(nodes[index].row, False), size).pooled:
                pools[index] = where[id(pool)]
        return pools

    def forward_node(self, node: Node, x: int, train: bool, workspace: bool, fused: bool = False,
                     pool: int = 1) -> int:
        heap, row = self.heap, node.row
        heap.where = f"forward {row.path} ({row.kind})"
        if node.paths:
            return self._merge_forward(node, x, train, workspace)
        work = self._work(row, train)
        if fused:
            plan = row.layer.forward_workspace(work, fused=True)
        else:
            plan = row.layer.forward_workspace(work, pool) if pool > 1 else row.layer.forward_workspace(work)
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

    def _merge_forward(self, node: Node, x: int, train: bool, workspace: bool) -> int:
        """A container: its paths on the same input, then their sum (Residual) or depth stack (Concat)."""
        heap, row = self.heap, node.row
        outs = [self.forward_path(path, x, train, workspace) for path in node.paths]
        heap.where = f"forward {row.path} ({row.kind})"
        if row.layer.merge == "add":
            body, short = outs
            for temp, other in ((body, short), (short, body)):  # body(x) + shortcut(x): a temporary is reused
                if heap.elidable(temp) and heap.size[temp] == heap.size[other]:
                    heap.unref(other)
                    return temp
        out = heap.new(self._bytes(row.output_shape))
        for o in outs:
            heap.unref(o)
        return out

    # backward -----------------------------------------------------------------
    def backward_path(self, nodes: list[Node], dout: int, input_grad: bool, contiguous: bool = True):
        """Gradient w.r.t. the path's input: ``(array id or None, whether the view is contiguous)``."""
        d = self.heap.ref(dout)
        for index in range(len(nodes) - 1, -1, -1):
            above = nodes[index + 1].row.layer if index + 1 < len(nodes) else None
            fused = above is not None and fused_backward_pair(nodes[index].row.layer, above)
            dx, dx_contiguous = self.backward_node(nodes[index], d, input_grad or index > 0, contiguous, fused)
            self.heap.unref(d)
            d, contiguous = dx, dx_contiguous
        return d, contiguous

    def backward_node(self, node: Node, dout: int, input_grad: bool, contiguous: bool = True, fused: bool = False):
        heap, row = self.heap, node.row
        heap.where = f"backward {row.path} ({row.kind})"
        if node.paths:
            # Residual: both paths get dout, dx = dbody + dshortcut (named variables: no elision).
            # Concat: each branch gets its slice of dout (np.split: a view, strided when there are
            # several branches), dx = the sum of the branches' gradients.
            split = row.layer.merge != "add" and len(node.paths) > 1
            grads = [self.backward_path(path, dout, input_grad, contiguous and not split) for path in node.paths]
            heap.where = f"backward {row.path} ({row.kind})"
            dx = heap.new(self._bytes(row.input_shape)) if input_grad else None
            for d, _ in grads:
                heap.unref(d)
            return dx, True
        work = self._work(row, True)
        plan = (row.layer.backward_workspace(work, input_grad, contiguous, fused=True) if fused
                else row.layer.backward_workspace(work, input_grad, contiguous))
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


def simulate(nodes: list[Node], input_shape, *, batch: int, itemsize: int, train: bool, cores: int,
             workspace: bool = True, backward: bool = True, frozen: int = 0) -> dict:
    """Replay one forward pass (and, in training, the backward pass) of ``nodes`` on ``cores`` cores.

    ``frozen``: in training, the first nodes run as in inference and backpropagation stops after them
    (the network's frozen first layers, ``Sequential.frozen_prefix``).

    Returns bytes on top of the data batch (which the caller holds): ``kept``
    (alive at the end of the forward pass: caches and output), ``forward_peak``
    and ``backward_peak`` with where they happen (``forward_peak_at``,
    ``backward_peak_at``), and ``kept_by`` (cache bytes per layer path, an
    array kept by two layers counted for the first).
    """
    engine = Engine(batch, itemsize, cores, plan=not train)
    heap = engine.heap
    data = heap.new(engine._bytes(input_shape))
    data_bytes = heap.size[data]
    heap.peak = heap.live
    if train and frozen:
        head = engine.forward_path(nodes[:frozen], data, False, workspace)
        out = engine.forward_path(nodes[frozen:], head, train, workspace)
        heap.unref(head)
    else:
        frozen = 0
        out = engine.forward_path(nodes, data, train, workspace)
    result = {"kept": heap.live - data_bytes, "forward_peak": heap.peak - data_bytes,
              "forward_peak_at": heap.peak_at, "kept_by": engine.kept_by, "backward_peak": 0,
              "backward_peak_at": ""}
    if train and backward:
        heap.peak = 0
        heap.where = "backward"
        dscores = heap.new(heap.size[out])
        dx, _ = engine.backward_path(nodes[frozen:], dscores, input_grad=False)
        heap.unref(dx)
        result["backward_peak"], result["backward_peak_at"] = heap.peak - data_bytes, heap.peak_at
    return result
