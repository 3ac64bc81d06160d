"""The one strided-window helper behind convolution and pooling.

A batch of volumes ``x`` is ``(N, H, W, D)``. A window op with extent F,
stride S and dilation looks, for output position ``(i, j)`` and filter tap
``(u, v)``, at input row ``i*S + u*dilation`` and column ``j*S + v*dilation``
of the padded input. Everything here is index bookkeeping; no arithmetic of
any layer lives in this file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..shapes import ShapeError, fit_axis, pair
from . import tiled
from .jit import ENABLED, compiled


@dataclass(frozen=True)
class Geometry:
    """Everything a window op needs to index its input, for both spatial axes.

    ``pads`` is ``(top, bottom, left, right)``; bottom/right may be negative
    when ``fit="crop"`` drops input rows no filter reaches.
    """

    in_shape: tuple[int, int, int, int]  # (N, H, W, D)
    size: tuple[int, int]  # F as (height, width)
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]
    out_hw: tuple[int, int]


def geometry(x_shape, size, stride=1, pad=0, dilation=1, *, fit=None, layer=None,
             pool=False) -> Geometry:
    """Validate a window op on a batch ``(N, H, W, D)`` and work out its output size."""
    if len(x_shape) != 4:
        raise ShapeError(
            f"{layer + ': ' if layer else ''}expected a batch of volumes (N, H, W, D), got an array "
            f"of shape {tuple(x_shape)}; add a batch axis with x[None] for a single volume"
        )
    size, stride, pad, dilation = (tuple(v) if isinstance(v, list) else v for v in (size, stride, pad, dilation))
    return _geometry(tuple(int(s) for s in x_shape), size, stride, pad, dilation, fit, layer, pool)


# A layer asks for the same geometry on every call; remembering it saves
# about 40 us per call, which is most of a batch-1 forward's bookkeeping.
@functools.lru_cache(maxsize=1024)
def _geometry(x_shape, size, stride, pad, dilation, fit, layer, pool) -> Geometry:
    F, S, P, dil = pair(size, "size"), pair(stride, "stride"), pair(pad, "pad"), pair(dilation, "dilation")
    fits = [
        fit_axis(x_shape[1 + a], F[a], S[a], P[a], dil[a], fit=fit, layer=layer,
                 axis=("height", "width")[a], pool=pool)
        for a in range(2)
    ]
    return Geometry(
        in_shape=x_shape, size=F, stride=S, dilation=dil,
        pads=(fits[0].pad_before, fits[0].pad_after, fits[1].pad_before, fits[1].pad_after),
        out_hw=(fits[0].size, fits[1].size),
    )


# pad_spatial zero-fills a batch up to this size whole, then copies it in (at batch 1 0.8 us against 2.8 for the
# borders one by one); a larger one borders only, so that its memory is written once.
SMALL_PAD_BYTES = 2**16


def pad_spatial(x: np.ndarray, pads, value=0.0, out: np.ndarray | None = None) -> np.ndarray:
    """Zero-pad (or, for negative amounts, crop) the H and W axes of ``(N, H, W, D)``; into ``out`` where
    given (of the padded shape; then always a copy).

    Written out rather than ``np.pad``, whose per-call bookkeeping is as
    costly as a batch-1 convolution's arithmetic (docs/performance-log.md).
    """
    top, bottom, left, right = pads
    if min(pads) < 0:
        x = x[:, max(-top, 0): x.shape[1] - max(-bottom, 0), max(-left, 0): x.shape[2] - max(-right, 0)]
        top, bottom, left, right = (max(p, 0) for p in pads)
    if top == bottom == left == right == 0 and out is None:
        return x
    N, H, W, D = x.shape
    shape = (N, top + H + bottom, left + W + right, D)
    if out is None and value == 0 and x.nbytes <= SMALL_PAD_BYTES:  # zeros, then the input: fewer NumPy calls
        xp = np.zeros(shape, dtype=x.dtype)
        xp[:, top: top + H, left: left + W] = x
        return xp
    xp = np.empty(shape, dtype=x.dtype) if out is None else out
    xp[:, :top] = value
    xp[:, top + H:] = value
    xp[:, top: top + H, :left] = value
    xp[:, top: top + H, left + W:] = value
    xp[:, top: top + H, left: left + W] = x
    return xp


def pad_images(x: np.ndarray, xp: np.ndarray, pads, start: int, stop: int) -> None:
    """Images ``start..stop`` of ``xp``: those of ``x`` padded by ``pads`` (:func:`pad_spatial`'s).

    A CONV's forward kernels take this as their ``fill`` (:class:`Fill`): each part of a split pads its own
    images just before it convolves them, on every core and while they are in cache, where a copy first ran
    on one core and through memory (ResNet's 32x32x64 -> 128 stride-2 CONV at batch 32: 0.9 of its 4.95 ms;
    docs/performance-log.md)."""
    kernel, args = pad_images_call(x, xp, pads, start, stop)
    kernel(*args)


def pad_images_call(x: np.ndarray, xp: np.ndarray, pads, start: int, stop: int) -> tuple:
    """:func:`pad_images` as one call ``(function, args)``: a compiled copy, which needs no GIL, where both
    arrays are C-contiguous, else NumPy's slices."""
    if ENABLED and x.flags.c_contiguous and xp.flags.c_contiguous:
        N, H, W, D = x.shape
        tiled.numba_helpers()
        return _padded_copy, (x.reshape(N, H, W * D), xp.reshape(xp.shape[0], xp.shape[1], -1), D, pads[0],
                              pads[2], start, stop)
    return _pad_slices, (x, xp, pads, start, stop)


def _pad_slices(x, xp, pads, start, stop):
    pad_spatial(x[start:stop], pads, out=xp[start:stop])


@dataclass(frozen=True, eq=False)
class Fill:
    """The ``fill`` a CONV's kernels take: ``fill(start, stop)`` pads images ``start..stop`` of ``xp`` from
    ``x`` (:func:`pad_images`); ``fill.call(start, stop)`` gives that as one call ``(function, args)``, for a
    part of :func:`volnet.ops.threads.split_compiled`."""

    x: np.ndarray
    xp: np.ndarray
    pads: tuple

    def __call__(self, start: int, stop: int) -> None:
        pad_images(self.x, self.xp, self.pads, start, stop)

    def call(self, start: int, stop: int) -> tuple:
        return pad_images_call(self.x, self.xp, self.pads, start, stop)


# Each part of a split pads with _padded_copy, a compiled loop over each padded row's runs (zeros, the input's row,
# zeros), which holds no GIL: two parts padding side by side with NumPy's slices took turns holding it. In a
# network pass on the AMD EPYC Zen 4, a part of LeNet's second CONV's input gradient padding 32 images of 14x14x32:
# 210 -> 150 us (a loop over pixels and channels then; one thread, the whole batch: 73 -> 63 us). As runs, one
# thread, half a batch of 64: 28x28x1 8 us against NumPy's 15 (the pixel loop: 102 for all 64), 14x14x32 33 against 48.


@compiled
def _padded_copy(x, xp, D, top, left, start, stop):  # pragma: no cover - compiled
    # x (N, H, W*D) and xp (N, Hp, Wp*D): each row of xp is zeros, x's row from column max(-left, 0) on (cropped
    # where left < 0 or it would reach past xp), zeros. Unsigned indices: Numba's wrap-around of negative ones
    # kept the loops scalar
    _, Hp, row = xp.shape
    _, H, _ = x.shape
    first, stop_column = max(left, 0) * D, min(left + x.shape[2] // D, row // D) * D
    source = max(-left, 0) * D
    for n in range(start, stop):
        for r in range(Hp):
            h = r - top
            if 0 <= h < H:
                for i in range(first):
                    xp[n, r, tiled.unsigned(i)] = 0
                for i in range(stop_column - first):
                    xp[n, r, tiled.unsigned(first + i)] = x[n, h, tiled.unsigned(source + i)]
                for i in range(stop_column, row):
                    xp[n, r, tiled.unsigned(i)] = 0
            else:
                for i in range(row):
                    xp[n, r, tiled.unsigned(i)] = 0


def unpad_spatial(dxp: np.ndarray, g: Geometry) -> np.ndarray:
    """Gradient w.r.t. the unpadded input from the gradient w.r.t. the padded one.

    Rows that ``pad_spatial`` cropped away get zero gradient.
    """
    top, bottom, left, right = g.pads
    H, W = g.in_shape[1:3]
    if min(g.pads) < 0:
        full = np.zeros(g.in_shape, dtype=dxp.dtype)
        r0, c0 = max(-top, 0), max(-left, 0)
        full[:, r0: r0 + dxp.shape[1] - max(top, 0) - max(bottom, 0),
             c0: c0 + dxp.shape[2] - max(left, 0) - max(right, 0)] = \
            dxp[:, max(top, 0): dxp.shape[1] - max(bottom, 0), max(left, 0): dxp.shape[2] - max(right, 0)]
        return full
    return dxp[:, top: top + H, left: left + W]


def tap(g: Geometry, u: int, v: int) -> tuple[slice, slice]:
    """Row and column slices of the padded input that filter tap (u, v) reads.

    ``xp[:, rows, cols]`` has shape ``(N, H2, W2, D)``: for every output
    position, the input value under tap (u, v).
    """
    (Ho, Wo), (Sh, Sw), (dh, dw) = g.out_hw, g.stride, g.dilation
    rows = slice(u * dh, u * dh + Sh * (Ho - 1) + 1, Sh)
    cols = slice(v * dw, v * dw + Sw * (Wo - 1) + 1, Sw)
    return rows, cols


def tap_phase(g: Geometry, u: int, v: int) -> tuple[int, int, slice, slice]:
    """Where filter tap (u, v) reads, in the stride's phase buffers: ``(a, b, rows, cols)``.

    Padded input row ``h = i*S + u*dilation`` has phase ``a = h mod S`` and
    is row ``h // S`` of that phase, so for all output rows i together the
    tap reads the plain block ``rows = p : p + H2`` of phase ``a``, where
    ``p, a = divmod(u*dilation, S)``; likewise for columns.
    """
    (Ho, Wo), (Sh, Sw), (dh, dw) = g.out_hw, g.stride, g.dilation
    p, a = divmod(u * dh, Sh)
    q, b = divmod(v * dw, Sw)
    return a, b, slice(p, p + Ho), slice(q, q + Wo)


def phase_buffer_shape(g: Geometry, padded_shape) -> tuple[int, int, int, int, int, int]:
    """``(Sh, Sw, N, ceil(Hp/Sh), ceil(Wp/Sw), D)``: room for every padded input row in its phase."""
    N, Hp, Wp, D = padded_shape
    Sh, Sw = g.stride
    return Sh, Sw, N, -(-Hp // Sh), -(-Wp // Sw), D


def interleave_phases(phases: np.ndarray, padded_shape) -> np.ndarray:
    """Phase buffers ``(Sh, Sw, N, Hs, Ws, D)`` back to one ``(N, Hp, Wp, D)`` volume batch.

    Row ``i`` of phase ``a`` is padded input row ``i*Sh + a`` (likewise for
    columns). With stride 1 this is a view, otherwise one copy.
    """
    Sh, Sw, N, Hs, Ws, D = phases.shape
    whole = phases.transpose(2, 3, 0, 4, 1, 5).reshape(N, Hs * Sh, Ws * Sw, D)
    return whole[:, : padded_shape[1], : padded_shape[2]]


def windows(xp: np.ndarray, g: Geometry) -> np.ndarray:
    """Read-only view ``(N, H2, W2, Fh, Fw, D)`` of every receptive field of the padded input."""
    n, sh, sw, sd = xp.strides
    (Ho, Wo), (Fh, Fw) = g.out_hw, g.size
    return as_strided(
        xp,
        shape=(xp.shape[0], Ho, Wo, Fh, Fw, xp.shape[3]),
        strides=(n, sh * g.stride[0], sw * g.stride[1], sh * g.dilation[0], sw * g.dilation[1], sd),
        writeable=False,
    )


def im2row(xp: np.ndarray, g: Geometry) -> np.ndarray:
    """im2col's transpose, the layout the fast kernels use: ``(N*H2*W2, F*F*D)``.

    One strided view, one contiguous copy: for NHWC volumes the depth axis is
    innermost in both, so the copy streams memory in order.
    """
    view = windows(xp, g)
    return np.ascontiguousarray(view).reshape(-1, view.shape[3] * view.shape[4] * view.shape[5])


def col2im(drows: np.ndarray, g: Geometry, padded_shape) -> np.ndarray:
    """Adjoint of :func:`im2row`: add every column's gradient back to where it was read from."""
    (Ho, Wo), (Fh, Fw) = g.out_hw, g.size
    dxp = np.zeros(padded_shape, dtype=drows.dtype)
    dwin = drows.reshape(padded_shape[0], Ho, Wo, Fh, Fw, padded_shape[3])
    for u in range(Fh):
        for v in range(Fw):
            rows, cols = tap(g, u, v)
            dxp[:, rows, cols] += dwin[:, :, :, u, v]
    return dxp
