"""The vocabulary in which each kernel describes the memory it allocates, from shapes alone.

Every fast kernel in ``volnet.ops`` has a workspace function right beside
it (``conv_forward`` and :func:`volnet.ops.conv_workspace.conv_workspace`,
``pool_backward`` and :func:`volnet.ops.pool.pool_backward_workspace`...)
that says, in bytes, which arrays one call allocates and which of them the
cache keeps. :mod:`volnet.analysis` replays a whole training step on these
descriptions (its heap engine) to predict the peak memory, and
``tests/analysis/test_memory.py`` holds the predictions to tracemalloc's
measurement of the real kernels: a kernel that changes what it allocates
changes the function next to it.

Notation: ``N`` volumes per batch, ``b`` bytes per value (the itemsize),
``n_in`` / ``n_out`` values in the whole input / output batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import threads

# NumPy reuses a temporary operand of ``a + b`` as the result when the
# temporary owns its data, nothing else refers to it, and it holds at least
# this many bytes (NPY_MIN_ELIDE_BYTES); both operands must have the same
# shape (a broadcast or a Python float operand prevents it, as measured).
ELIDE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Workload:
    """One layer's call in a replayed pass: one volume's shapes, the batch, bytes per value, the cores.

    ``cores`` is what a network pass splits its kernels over
    (:func:`volnet.ops.threads.workers_for`); ``params`` the layer's parameter
    count (its gradients are new arrays in the backward pass).
    """

    input_shape: tuple
    output_shape: tuple
    N: int
    itemsize: int
    cores: int = 1
    train: bool = True
    params: int = 0

    @property
    def n_in(self) -> int:
        return self.N * math.prod(self.input_shape)

    @property
    def n_out(self) -> int:
        return self.N * math.prod(self.output_shape)

    @property
    def grads(self) -> int:
        """Bytes of the new gradient arrays, alive before they replace the previous step's."""
        return self.params * self.itemsize


@dataclass(frozen=True)
class ForwardWorkspace:
    """What one forward call allocates: ``private`` arrays ``(bytes, kept in training)``, its output
    (``out`` bytes; None: a view of the input, ``out_owns`` False: a view of a larger buffer), what
    its cache refers to (``keeps_input``, ``keeps_output``), and ``transient`` bytes alive for a moment;
    ``pooled``: the output is already a following max pool's (a CONV that pools in its output pass)."""

    private: tuple = ()
    out: int | None = 0
    out_owns: bool = True
    keeps_input: bool = False
    keeps_output: bool = False
    transient: int = 0
    pooled: bool = False


@dataclass(frozen=True)
class BackwardWorkspace:
    """Bytes alive on top of dout and the caches at the call's peak (dx included), and dx (None: a view
    of dout). ``dx_contiguous`` is false for a view that skips padding, which the next CONV copies."""

    extra: int = 0
    dx: int | None = 0
    dx_contiguous: bool = True


def float_dtype(itemsize: int):
    """The float dtype of values of ``itemsize`` bytes: the estimates know bytes, the kernels' plans dtypes."""
    return np.dtype(f"f{itemsize}")


def padded(g) -> tuple[tuple, bool, bool]:
    """``window.pad_spatial`` for geometry ``g``: ``(padded shape, whether it copies the input, whether it
    returns a cropped view)``."""
    N, H, W, D = g.in_shape
    top, bottom, left, right = g.pads
    copies = any(p > 0 for p in g.pads)
    cropped = any(p < 0 for p in g.pads) and not copies
    return (N, H + top + bottom, W + left + right, D), copies, cropped


def unpadded(g, dxp: int, n_in: int, b: int) -> tuple[int, int, bool]:
    """``window.unpad_spatial`` of a gradient buffer of ``dxp`` bytes: ``(bytes it allocates, dx bytes,
    whether dx is contiguous)``. A view, strided unless there is no padding; after a crop, a new
    full-size array."""
    if any(p < 0 for p in g.pads):
        return n_in * b, n_in * b, True
    return 0, dxp, not any(g.pads)


def windows_contiguous(g) -> bool:
    """Whether ``window.windows(xp, g)`` is C-contiguous, so that im2col needs no copy (1x1 filters, S=1)."""
    padded_shape, _, cropped = padded(g)
    N, Hp, Wp, D = padded_shape
    base = g.in_shape[1:3] if cropped else (Hp, Wp)
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


def images_per_block(N: int, per_image: int, block_bytes: int) -> int:
    """Images per block of ``block_bytes`` (``volnet.ops.conv_rows.images_per_block``), at least one."""
    return max(1, min(N, block_bytes // max(1, per_image)))


def part_sizes(N: int, workers: int) -> list[int]:
    """The sizes of the parts ``volnet.ops.threads.split`` cuts a batch of N into."""
    return [stop - start for start, stop in threads.parts(N, workers)]


def split_blocks(N: int, per_image: int, block_bytes: int, workers: int) -> int:
    """Images in the block buffers of all threads at once: each part of the batch has its own blocks.

    This counts every part's blocks as alive together, as they are when the
    threads run side by side (``threads.split`` allocates every part's
    buffers before any part runs).
    """
    return sum(images_per_block(n, per_image, block_bytes) for n in part_sizes(N, workers))
