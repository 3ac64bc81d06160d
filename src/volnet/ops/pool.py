"""Pooling (the POOL layer's arithmetic): max, average and L2-norm, naive and fast.

Notation: x is ``(N, H, W, D)``; a window of F x F moves with stride S over
every depth slice independently. The output is ``(N, H2, W2, D)`` with
``H2 = (H - F)/S + 1`` (see :mod:`volnet.shapes`). The two usual settings are
F=2, S=2 and the overlapping F=3, S=2.

Pooling usually takes no padding; ``pad=P`` (at most F/2, as in PyTorch)
adds P rows and columns on each border, so that ``H2 = (H - F + 2P)/S + 1``:
F=3, S=1, P=1 keeps the size (GoogLeNet's inception module). Max pooling
pads with -inf, so padding never wins a window; average and L2-norm pooling
pad with zeros, which count in the mean (PyTorch's ``count_include_pad``).

* max:     ``out = max over the window``; backward routes the gradient only
  to the input that held the maximum, found through the *switches* (index
  of the max within each window) recorded in the forward pass.
* average: ``out = mean over the window`` (padding, with ``fit="pad"``,
  counts as zeros).
* L2-norm: ``out = sqrt(sum of squares over the window)``.

``pool_forward_naive(x, F, S, mode)`` loops over output positions; the fast
``pool_forward`` visits the F*F taps of the window instead, each one a
strided slice of the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..shapes import ShapeError, pair
from . import direct, pool_kernels, threads
from .dense import relu_backward
from .memo import hashable, remembered
from .workspace import BackwardWorkspace, ForwardWorkspace, float_dtype, padded, unpadded
from .window import (Geometry, geometry, interleave_phases, pad_spatial, phase_buffer_shape, tap, tap_phase,
                     unpad_spatial)

MODES = ("max", "avg", "l2")


@dataclass(frozen=True)
class PoolCache:
    """Backward needs the geometry plus: the switches (max), the input and
    output (l2), or nothing else (avg)."""

    mode: str
    geometry: Geometry
    padded_shape: tuple
    switches: np.ndarray | None = None
    xp: np.ndarray | None = None
    out: np.ndarray | None = None


def pool_geometry(x_shape, F=2, S=None, pad=0, *, fit=None, layer=None) -> Geometry:
    """Validate a pooling window on a batch ``(N, H, W, D)``: S defaults to F, and P is at most F/2.

    A larger P would leave windows that hold padding only.
    """
    for f, p in zip(pair(F, "F"), pair(pad, "pad")):
        if 2 * p > f:
            raise ShapeError(f"{layer + ': ' if layer else ''}pooling pad P={p} is more than half the "
                             f"window F={f}, so some windows would hold padding only; use P <= {f // 2}")
    # Unpadded pooling states its formula without P (the notes' (W - F)/S + 1).
    return geometry(x_shape, F, F if S is None else S, pad, 1, fit=fit, layer=layer,
                    pool=pair(pad, "pad") == (0, 0))


def _setup(x, F, S, mode, fit, layer, pad):
    if mode not in MODES:
        raise ValueError(f"pooling mode must be one of {MODES}, got {mode!r}")
    g = pool_geometry(x.shape, F, S, pad, fit=fit, layer=layer)
    # Max pooling pads with -inf so that padding never wins; the others with 0.
    xp = pad_spatial(x, g.pads, value=-np.inf if mode == "max" else 0.0)
    return g, xp


def pool_forward_naive(x, F=2, S=None, mode="max", *, pad=0, fit=None, layer=None):
    """Pooling by looping over output positions: ``out[n,i,j,d] = op(xp[n, i*S:i*S+F, j*S:j*S+F, d])``.

    xp is x padded by ``pad`` (-inf for max, zeros otherwise).
    """
    g, xp = _setup(x, F, S, mode, fit, layer, pad)
    (Ho, Wo), (Fh, Fw), (Sh, Sw) = g.out_hw, g.size, g.stride
    N, D = x.shape[0], x.shape[3]
    out = np.zeros((N, Ho, Wo, D), dtype=x.dtype)
    switches = np.zeros((N, Ho, Wo, D), dtype=np.intp)
    for i in range(Ho):
        for j in range(Wo):
            field = xp[:, i * Sh: i * Sh + Fh, j * Sw: j * Sw + Fw, :].reshape(N, Fh * Fw, D)
            if mode == "max":
                switches[:, i, j] = field.argmax(axis=1)
                out[:, i, j] = field.max(axis=1)
            elif mode == "avg":
                out[:, i, j] = field.mean(axis=1)
            else:
                out[:, i, j] = np.sqrt((field * field).sum(axis=1))
    return out, PoolCache(mode, g, xp.shape, switches if mode == "max" else None,
                          xp if mode == "l2" else None, out if mode == "l2" else None)


def pool_backward_naive(dout, cache: PoolCache):
    """Backward of :func:`pool_forward_naive`, one output position at a time."""
    g = cache.geometry
    (Ho, Wo), (Fh, Fw), (Sh, Sw) = g.out_hw, g.size, g.stride
    N, _, _, D = cache.padded_shape
    dxp = np.zeros(cache.padded_shape, dtype=dout.dtype)
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * Sh, i * Sh + Fh), slice(j * Sw, j * Sw + Fw)
            if cache.mode == "max":
                dfield = np.zeros((N, Fh * Fw, D), dtype=dout.dtype)
                np.put_along_axis(dfield, cache.switches[:, i, j][:, None, :], dout[:, i, j][:, None, :], axis=1)
                dxp[:, rows, cols] += dfield.reshape(N, Fh, Fw, D)
            elif cache.mode == "avg":
                dxp[:, rows, cols] += dout[:, i, j][:, None, None, :] / (Fh * Fw)
            else:
                norm = cache.out[:, i, j][:, None, None, :]
                share = np.divide(cache.xp[:, rows, cols], norm, out=np.zeros_like(cache.xp[:, rows, cols]),
                                  where=norm > 0)
                dxp[:, rows, cols] += dout[:, i, j][:, None, None, :] * share
    return unpad_spatial(dxp, g)


def pool_forward(x, F=2, S=None, mode="max", *, pad=0, fit=None, layer=None, switches=True, workers=None):
    """Fast pooling: the compiled kernels of :mod:`volnet.ops.pool_kernels` where :func:`pool_plan` says
    so, else the F*F strided slices of the batch combined one tap at a time.

    Same arguments and result as :func:`pool_forward_naive`. For max pooling
    the switches record, per output neuron, which tap (``u*F + v``) won;
    ``switches=False`` (inference, where no backward pass follows) skips
    them, which is about half the work, and returns a cache without them.
    Max and average pooling split the batch over ``workers`` (a
    :class:`volnet.ops.threads.Workers`; None: :func:`volnet.ops.threads.alone`).
    The geometry, plan and split follow from the shapes alone: worked out once per layer and shape
    (:func:`forward_step`).
    """
    step = forward_step(x.shape, x.dtype, hashable(F), hashable(S), mode, hashable(pad), fit, layer, bool(switches),
                         threads.or_alone(workers))
    return step(x)


@remembered
def forward_step(x_shape, dtype, F, S, mode, pad, fit, layer, switches: bool, workers):
    """:func:`pool_forward` on batches of ``x_shape`` and ``dtype`` under ``workers``, as a function of the batch
    alone, ``x -> (out, cache)``."""
    if mode not in MODES:
        raise ValueError(f"pooling mode must be one of {MODES}, got {mode!r}")
    g = pool_geometry(x_shape, F, S, pad, fit=fit, layer=layer)
    value = -np.inf if mode == "max" else 0.0  # max pooling pads with -inf so that padding never wins
    if not _compiled(mode, dtype):
        return lambda x: _forward_by_taps(pad_spatial(x, g.pads, value), g, mode, switches, workers)
    count = _gather_workers(g, dtype, workers, switches and mode == "max")
    held, code = workers.blas_held, _switch_code(g.size[0] * g.size[1])
    padded = any(g.pads)

    def step(x):
        xp = pad_spatial(x, g.pads, value) if padded else x
        source = _whole(x, xp)
        if mode == "avg":
            return pool_kernels.avg_pool(source, g, count, blas_held=held), PoolCache(mode, g, xp.shape)
        if not switches:
            return pool_kernels.max_pool_values(source, g, count, blas_held=held), PoolCache(mode, g, xp.shape)
        out, found = pool_kernels.max_pool(source, g, code, count, blas_held=held)
        return out, PoolCache(mode, g, xp.shape, switches=found)

    return step


def _forward_by_taps(xp, g: Geometry, mode: str, switches: bool, workers):
    """:func:`pool_forward` of the padded batch ``xp`` as NumPy passes, one per tap of the window."""
    taps = _taps(g)
    N, D = xp.shape[0], xp.shape[3]
    if mode == "max" and not switches:
        out = np.empty((N, *g.out_hw, D), dtype=xp.dtype)

        def maximum_part(start, stop):
            yield
            part, window = out[start:stop], xp[start:stop]
            np.copyto(part, window[:, taps[0][0], taps[0][1]])
            for rows, cols in taps[1:]:
                np.maximum(part, window[:, rows, cols], out=part)

        workers.split(maximum_part, len(out), _workers(xp, out, workers))
        return out, PoolCache(mode, g, xp.shape)
    if mode == "max":
        out, found = _max_and_switches(xp, taps, workers)
        return out, PoolCache(mode, g, xp.shape, switches=found)
    out = np.zeros((N, *g.out_hw, D), dtype=xp.dtype)
    for rows, cols in taps:
        window_tap = xp[:, rows, cols]
        out += window_tap if mode == "avg" else window_tap * window_tap
    if mode == "avg":
        out /= g.size[0] * g.size[1]
        return out, PoolCache(mode, g, xp.shape)
    np.sqrt(out, out=out)
    return out, PoolCache(mode, g, xp.shape, xp=xp, out=out)


def pool_plan(mode: str, dtype) -> str:
    """Which kernels pool values of ``dtype`` in ``mode``, forward and backward: ``"compiled"``
    (:mod:`volnet.ops.pool_kernels`, channels innermost, backward as a gather) or ``"taps"`` (a NumPy pass per
    tap of the window)."""
    return "compiled" if _compiled(mode, dtype) else "taps"


def _compiled(mode: str, dtype) -> bool:
    """Whether max (with switches or, in inference, without) and average pooling of ``dtype`` values, forward
    and backward, take the compiled kernels of :mod:`volnet.ops.pool_kernels` (Numba on) rather than the
    tap-by-tap NumPy passes: faster on the Intel Xeon, max pooling 3x3/2 55x55x96 at batch 8 and (inference)
    LeNet's 2x2 pools at batches 1 and 256 (docs/performance-log.md)."""
    return direct.ENABLED and mode in ("max", "avg") and np.dtype(dtype) in (np.float32, np.float64)


def _whole(x, xp):
    """What the compiled kernels read: xp, or where padding only cropped x (a strided view of it), x itself,
    whose first rows and columns are the view's (the kernels read no further): no copy, and one compiled
    kernel for every layout."""
    return x if xp.base is x and xp.shape[1:] != x.shape[1:] else xp


def _switch_code(taps: int):
    """The switches' dtype: one byte where the window has fewer than 256 taps."""
    return np.uint8 if taps < 256 else np.intp


def _taps(g: Geometry):
    """The ``(rows, cols)`` slices of every tap, in switch order ``k = u*F + v``."""
    return [tap(g, u, v) for u in range(g.size[0]) for v in range(g.size[1])]


def _workers(xp, out, workers) -> int:
    """Threads for a pooling kernel over ``xp`` (in) and ``out`` (:func:`volnet.ops.threads.memory_workers_for`)."""
    return workers.for_bytes(xp.nbytes + out.nbytes, len(out))


def _gather_workers(g: Geometry, dtype, workers, switches: bool = False, rectified: bool = False) -> int:
    """Threads for :mod:`volnet.ops.pool_kernels`' pooling of geometry ``g``: by the bytes they read and write,
    the input and output, and where given the switches (a byte per output) and a ReLU's output (the input's
    size). Counted so, LeNet's second POOL (64 x 14x14x32, 2 MB in and out) splits over two cores: with
    switches forward 182 -> 126 us, backward through the ReLU 420 -> 241 (the AMD EPYC Zen 4)."""
    N, H, W, D = g.in_shape
    inputs, outputs = H * W * N * D, g.out_hw[0] * g.out_hw[1] * N * D
    itemsize = np.dtype(dtype).itemsize
    nbytes = (inputs * (2 if rectified else 1) + outputs) * itemsize + (outputs if switches else 0)
    return workers.for_bytes(nbytes, N)


def _max_and_switches(xp, taps, workers):
    """Running maximum over the taps, and the index of the first tap that reached it."""
    first_tap = xp[:, taps[0][0], taps[0][1]]
    out = np.empty(first_tap.shape, dtype=xp.dtype)
    code = _switch_code(len(taps))
    switches = np.zeros(out.shape, dtype=code)
    wins = np.empty(out.shape, dtype=bool)

    def maximum_part(start, stop):  # every array is the batch's, each part works on its own images
        yield
        part, part_switches, part_wins, window = out[start:stop], switches[start:stop], wins[start:stop], xp[start:stop]
        np.copyto(part, first_tap[start:stop])
        for k, (rows, cols) in enumerate(taps[1:], start=1):
            candidate = window[:, rows, cols]
            np.greater(candidate, part, out=part_wins)  # strict: ties keep the first maximum, like argmax
            # Taps come in increasing k, so a new winner's code is larger than any
            # switch so far: a maximum records it without a (slow) masked write.
            np.maximum(part_switches, part_wins * code(k), out=part_switches)
            np.maximum(part, candidate, out=part)

    workers.split(maximum_part, len(out), _workers(xp, out, workers))
    return out, switches


def pool_backward(dout, cache: PoolCache, *, workers=None, rectified=None):
    """Fast backward of :func:`pool_forward` (``workers`` as there): the compiled gathers, or tap by tap.

    ``rectified``: the pool's input was a ReLU's output, and dx goes back through that ReLU too
    (:func:`volnet.ops.dense.relu_backward`'s numbers; in the compiled gather, as each value is written).
    """
    if rectified is not None and not _compiled(cache.mode, dout.dtype):
        return relu_backward(pool_backward(dout, cache, workers=workers), rectified, workers=workers)
    g = cache.geometry
    Fh, Fw = g.size
    if cache.mode == "max" and cache.switches is None:
        raise ValueError("pool_backward: this max-pool cache has no switches; "
                         "run pool_forward with switches=True (the default) before a backward pass")
    if _compiled(cache.mode, dout.dtype):
        workers = threads.or_alone(workers)
        count = _gather_workers(g, dout.dtype, workers, cache.mode == "max", rectified is not None)
        # (a strided dout, the gradient of a padded CONV above, is copied: one compiled kernel for every layout)
        return pool_kernels.pool_backward(np.ascontiguousarray(dout), g, cache.switches, count,
                                          blas_held=workers.blas_held, rectified=rectified)
    if cache.mode == "max":
        return unpad_spatial(_route_through_switches(dout, cache.switches, g, cache.padded_shape,
                                                     threads.or_alone(workers)), g)
    dxp = np.zeros(cache.padded_shape, dtype=dout.dtype)
    if cache.mode == "avg":
        share = dout / (Fh * Fw)
    else:
        scaled = np.divide(dout, cache.out, out=np.zeros_like(dout), where=cache.out > 0)
    for rows, cols in _taps(g):
        if cache.mode == "avg":
            dxp[:, rows, cols] += share
        else:
            dxp[:, rows, cols] += scaled * cache.xp[:, rows, cols]
    return unpad_spatial(dxp, g)


def pool_workspace(g: Geometry, mode: str, itemsize: int, train: bool = True) -> ForwardWorkspace:
    """The memory :func:`pool_forward` allocates (see :mod:`volnet.ops.workspace`): xp (a copy when padded);
    max: the output, the switches (kept, training only; in inference a running maximum in place), a bool and
    a code array per tap; avg: the output, added in place; l2: the output and a squared tap, xp and the
    output kept."""
    b, (N, _, _, D) = itemsize, g.in_shape
    n_out = N * g.out_hw[0] * g.out_hw[1] * D
    xp_shape, copies, _ = padded(g)
    xp = ((math.prod(xp_shape) * b, mode == "l2"),) if copies else ()
    if mode == "max" and not train:
        return ForwardWorkspace(xp, n_out * b)
    if mode == "max":
        code = np.dtype(_switch_code(math.prod(g.size))).itemsize
        transient = 0 if _compiled(mode, float_dtype(b)) else n_out * (1 + code)  # a bool and a code per tap
        return ForwardWorkspace(xp + ((n_out * code, True),), n_out * b, transient=transient)
    if mode == "l2":
        return ForwardWorkspace(xp, n_out * b, keeps_input=not copies, keeps_output=True, transient=n_out * b)
    return ForwardWorkspace(xp, n_out * b)


def pool_backward_workspace(g: Geometry, mode: str, itemsize: int) -> BackwardWorkspace:
    """The memory :func:`pool_backward` allocates on top of dout and the cache: the compiled gathers (max,
    avg) dx alone; otherwise dxp, zeros of the padded input (dx is a view of it); max: a bool per output
    and, for overlapping windows, a share per output; avg: dout / (F*F); l2: the scaled dout and a share
    per tap."""
    b, (N, H, W, D) = itemsize, g.in_shape
    if _compiled(mode, float_dtype(b)):  # the gather writes dx itself
        return BackwardWorkspace(N * H * W * D * b, N * H * W * D * b, True)
    n_out = N * g.out_hw[0] * g.out_hw[1] * D
    xp_shape, _, _ = padded(g)
    dxp = math.prod(xp_shape) * b
    if mode == "max":
        overlapping = any(f > s for f, s in zip(g.size, g.stride))
        extra = n_out * (1 + (b if overlapping else 0))
    elif mode == "avg":
        extra = n_out * b
    else:
        extra = 2 * n_out * b
    full, dx, contiguous = unpadded(g, dxp, N * H * W * D, b)
    return BackwardWorkspace(dxp + max(extra, full), dx, contiguous)


def _route_through_switches(dout, switches, g: Geometry, padded_shape, workers):
    """The padded input's gradient: each output's gradient goes to the tap its switch names.

    ``dout * (switches == k)`` is tap k's share. When windows do not overlap
    (F <= S) every input belongs to at most one window, so the share is
    written straight into place. Overlapping windows add their shares into
    the stride's phase buffers (:func:`~volnet.ops.window.tap_phase`), where
    each tap is one unstrided block, and the phases are interleaved once at
    the end. (Multiplying by the mask is faster than ``np.where``, see
    docs/performance-log.md; the price is that an inf or NaN in ``dout`` makes
    the other inputs of its window NaN, where the naive version leaves them
    0.)
    """
    chosen = np.empty(dout.shape, dtype=bool)
    count = workers.for_bytes(dout.nbytes * (2 + np.prod(g.size)), len(dout))
    if all(f <= s for f, s in zip(g.size, g.stride)):
        dxp = np.zeros(padded_shape, dtype=dout.dtype)

        def write_part(start, stop):  # each part writes its own images
            yield
            for k, (rows, cols) in enumerate(_taps(g)):
                np.equal(switches[start:stop], k, out=chosen[start:stop])
                np.multiply(dout[start:stop], chosen[start:stop], out=dxp[start:stop, rows, cols])

        workers.split(write_part, len(dout), count)
        return dxp
    phases = np.zeros(phase_buffer_shape(g, padded_shape), dtype=dout.dtype)
    share = np.empty_like(dout)

    def add_part(start, stop):  # each part adds into its own images' phases
        yield
        part_dout, part_chosen, part_share = dout[start:stop], chosen[start:stop], share[start:stop]
        written = set()
        for k, (u, v) in enumerate(np.ndindex(*g.size)):
            np.equal(switches[start:stop], k, out=part_chosen)
            a, b, rows, cols = tap_phase(g, u, v)
            if (a, b) not in written:  # the first tap of a phase finds zeros there: write, don't add
                np.multiply(part_dout, part_chosen, out=phases[a, b, start:stop, rows, cols])
                written.add((a, b))
                continue
            np.multiply(part_dout, part_chosen, out=part_share)
            phases[a, b, start:stop, rows, cols] += part_share

    workers.split(add_part, len(dout), count)
    return interleave_phases(phases, padded_shape)
