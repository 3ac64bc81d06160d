"""The memory the CONV's fast kernels allocate (:mod:`volnet.ops.conv`), as its plan runs them: what the
memory model (:mod:`volnet.analysis.memory`) counts for a CONV layer, in a network pass on a given number of cores.
See :mod:`volnet.ops.workspace` for the conventions and the tests that hold each estimate to what the kernels
allocate."""

from __future__ import annotations

import math

from ..shapes import effective_extent
from . import (conv_rows, direct, direct_input, direct_weights, native_blas, streamed, threads, winograd, winograd_5x5,
               winograd_fused)
from .conv import flipped_geometry
from .conv_plan import plan_conv, pools_in_kernel
from .workspace import (BackwardWorkspace, ForwardWorkspace, float_dtype, images_per_block, padded, part_sizes,
                        split_blocks, unpadded, windows_contiguous)
from .window import Geometry

def conv_workspace(g: Geometry, filters: int, itemsize: int, cores: int = 1, pool: int = 1) -> ForwardWorkspace:
    """The memory :func:`conv_forward` allocates in a network pass on ``cores`` (see :mod:`volnet.ops.workspace`).

    xp = pad_spatial(x), a copy when padded, kept in the cache (the input
    itself is kept when P = 0); the im2col rows of each thread's block of
    images with their column of ones (none where the windows are already
    contiguous), or Winograd's tiles, or the direct kernel's padded weights; the output, which with ``pool``
    > 1 the direct forward max pools in its output pass (``pooled``; an inference step's
    :func:`~volnet.ops.conv.forward_step`: other plans pool after the CONV, as a POOL layer would).
    """
    b, N, K = itemsize, g.in_shape[0], filters
    xp_shape, copies, _ = padded(g)
    Ho, Wo = g.out_hw
    split_rows = N == 1 and native_blas.split_threads(cores) > 1  # (as the forward pass at batch 1 runs it)
    rows = _correlation_workspace(g, K, b, cores, split_rows)
    private = ((math.prod(xp_shape) * b, True),) if copies else ()
    plan = plan_conv(g, K, float_dtype(b), cores, network_pass=True, split_rows=split_rows)
    owns = plan.forward in ("direct", "winograd_fused")  # (im2col's: a view)
    pooled = pools_in_kernel(plan.forward, g, pool)
    out = N * Ho * Wo * K * b // (pool * pool if pooled else 1)
    return ForwardWorkspace(private, out, out_owns=owns, keeps_input=not copies, transient=rows, pooled=pooled)


def conv_backward_workspace(g: Geometry, filters: int, itemsize: int, cores: int = 1, *, grads: int = 0,
                            input_grad: bool = True, dout_contiguous: bool = True) -> BackwardWorkspace:
    """The memory :func:`conv_backward` allocates in a network pass on ``cores``, on top of dout and the cache.

    dw (and db, from the rows' column of ones) from im2col rows rebuilt block
    by block; dx block by block (shallow inputs), as a convolution of the
    padded dout with the flipped filters (deep inputs, stride 1) or by col2im
    into phase buffers of the padded input (deep inputs, strided; by the forward kernel per stride phase
    where :func:`volnet.ops.direct_input.applies_by_phases`). 3x3
    stride-1 layers take Winograd for dx (deep dout) and for dw (enough
    filters) instead. ``grads`` is the bytes of the new dw and db.

    ``dout.reshape(-1, K)`` copies a strided dout (the gradient of a padded
    CONV above), and the copy lives through the whole backward pass; dx's
    blocks reshape dout again.
    """
    b, (N, H, W, D), K = itemsize, g.in_shape, filters
    xp_shape, _, _ = padded(g)
    (Ho, Wo), (Fh, Fw), (Sh, Sw) = g.out_hw, g.size, g.stride
    weights = (Fh * Fw * D + 1) * K * b  # dw and db in one array
    grads += 0 if dout_contiguous else N * Ho * Wo * K * b
    workers = threads.workers_for(N * Ho * Wo * K * Fh * Fw * D, N, cores)  # the im2col kernels' threads
    plan = plan_conv(g, K, float_dtype(b), cores, network_pass=True)
    if plan.weight_gradient == "winograd":
        phases = [grads + winograd.workspace(g.out_hw, D, K, N, b, cores, conv_rows.BLOCK_BYTES, weight_gradient=True)]
    elif plan.weight_gradient == "direct":
        phases = [grads + direct_weights.workspace_weight_gradient(g, K, b, direct.workers(g, K, cores))]
    elif plan.weight_gradient == "winograd_5x5":
        phases = [grads + _general_winograd_workspace(g.out_hw, D, K, N, Fh, b, cores, weight_gradient=True)]
    else:
        # each thread's part of the batch: its rows, its dw (and db), and one block's share of it
        rows, partials = 0, 0
        contiguous = windows_contiguous(g)
        for n in part_sizes(N, workers):
            blocks = 1
            if not contiguous:
                per_image = Ho * Wo * (Fh * Fw * D + 1) * b
                step = images_per_block(n, per_image, conv_rows.BLOCK_BYTES)
                rows, blocks = rows + step * per_image, -(-n // step)
            partials += weights * (2 if blocks > 1 else 1)  # np.add(dw, part, out=dw)
        phases = [grads + rows + partials - weights, grads + N * Ho * Wo * b]
    if not input_grad:
        return BackwardWorkspace(max(phases), 0)
    _, Hp, Wp, _ = xp_shape
    Hs, Ws = -(-Hp // Sh), -(-Wp // Sw)
    if plan.input_gradient == "direct":  # direct_input.input_gradient: dx, and dout's rows where it is strided
        dx = N * H * W * D * b
        phases.append(grads + dx + (0 if dout_contiguous else N * Ho * Wo * K * b) + Fh * Fw * D * K * b)
        return BackwardWorkspace(max(phases), dx, True)
    if plan.input_gradient == "phases":  # direct_input.input_gradient_by_phases: dx, padded dout, sub-filters
        dx = N * H * W * D * b
        phases.append(grads + dx + direct_input.workspace_by_phases(g, K, b))
        return BackwardWorkspace(max(phases), dx, True)
    if plan.input_gradient == "pointwise":  # conv_rows.input_gradient_pointwise: dx, each part's products
        dx = N * H * W * D * b
        rows, columns = conv_rows.pointwise_outputs(g)
        h, w = rows.stop - rows.start, columns.stop - columns.start
        images = split_blocks(N, h * w * (K + D) * b, conv_rows.BLOCK_BYTES, workers)  # in blocks at once
        copied = 0 if dout_contiguous and (h, w) == (Ho, Wo) else K  # a block's dout rows, where strided
        phases.append(grads + dx + images * h * w * (D + copied) * b)
        return BackwardWorkspace(max(phases), dx, True)
    if plan.input_gradient == "shallow":  # _input_gradient_shallow
        dx = math.prod(xp_shape) * b
        blocks = split_blocks(N, Ho * Wo * Fh * Fw * D * b, conv_rows.BLOCK_BYTES, workers)  # a block per thread
        # per block: the shares (W @ dout.T), the phase buffers, their interleaved copy, dout's block copy
        per_image = Ho * Wo * Fh * Fw * D + 2 * Sh * Sw * Hs * Ws * D + (0 if dout_contiguous else Ho * Wo * K)
        phases.append(grads + dx + blocks * per_image * b)
        whole = True
    elif plan.input_gradient == "flipped":
        # conv_backward_input_flipped: dout padded to (H + eh - 1, W + ew - 1) (a copy where any side is
        # padded, not only cropped), the flipped filters (a copy, except where Winograd folds the flip into
        # its transform), its im2col rows a block at a time, and dx itself (no unpadding)
        flipped_g = flipped_geometry(g, K)
        eh, ew = map(effective_extent, g.size, g.dilation)
        dout_padded = N * (H + eh - 1) * (W + ew - 1) * K * b if max(flipped_g.pads) > 0 else 0
        winograd_dx = plan_conv(flipped_g, D, float_dtype(b), cores, network_pass=True).forward in (
            "winograd", "winograd_fused")  # (the compiled one counts its copy of them: _correlation_workspace)
        filters = 0 if winograd_dx else Fh * Fw * K * D * b
        dx = N * H * W * D * b
        phases.append(grads + dout_padded + filters + _correlation_workspace(flipped_g, D, b, cores, flipped=True)
                      + dx)
        return BackwardWorkspace(max(phases), dx, True)
    else:  # _input_gradient_deep, strided: each thread's share buffer, then interleave_phases copies
        buffers = Sh * Sw * N * Hs * Ws * D * b
        blocks = split_blocks(N, Ho * Wo * (K + D) * b, conv_rows.BLOCK_BYTES, workers)
        phases.append(grads + buffers + blocks * Ho * Wo * (D + (0 if dout_contiguous else K)) * b)
        dx = N * Hs * Sh * Ws * Sw * D * b
        phases.append(grads + buffers + dx)
        whole = (Hs * Sh, Ws * Sw) == (Hp, Wp)
    full, dx, contiguous = unpadded(g, dx, N * H * W * D, b)
    phases.append(grads + dx + full)
    return BackwardWorkspace(max(phases), dx, contiguous and whole)


def _correlation_workspace(g: Geometry, filters: int, itemsize: int, cores: int, split_rows: bool = False,
                           flipped: bool = False) -> int:
    """Bytes :func:`_convolve` allocates beside its output in a network pass on ``cores``, as its plan runs it:
    Winograd's tiles, the direct kernel's padded weights, or each thread's block of im2col rows (none where
    the windows are already contiguous; ``split_rows``: each of Numba's threads' receptive fields); ``flipped``:
    an input gradient's correlation (:func:`volnet.ops.conv.conv_backward_input_flipped`)."""
    b, (N, _, _, D), K = itemsize, g.in_shape, filters
    (Ho, Wo), (Fh, Fw) = g.out_hw, g.size
    forward = plan_conv(g, K, float_dtype(b), cores, network_pass=True, split_rows=split_rows).forward
    if forward == "winograd":
        return winograd.workspace(g.out_hw, D, K, N, b, cores, conv_rows.BLOCK_BYTES)
    if forward == "direct":
        return direct.workspace(g, K, b)
    if forward == "winograd_fused":
        return winograd_fused.workspace(g, K, b, direct.workers(g, K, cores), flipped)
    if forward == "winograd_5x5":
        return _general_winograd_workspace(g.out_hw, D, K, N, Fh, b, cores)
    if forward == "streamed":
        return streamed.workspace(g, K, b, native_blas.split_threads(cores))
    if split_rows:
        return native_blas.correlate_scratch(g.out_hw, Fh * Fw * D, native_blas.split_threads(cores), b)
    if windows_contiguous(g):
        return 0
    per_image = Ho * Wo * (Fh * Fw * D + 1) * b
    workers = threads.workers_for(N * Ho * Wo * K * Fh * Fw * D, N, cores)
    return per_image * split_blocks(N, per_image, conv_rows.BLOCK_BYTES, workers)


def _general_winograd_workspace(out_hw, depth: int, filters: int, images: int, r: int, itemsize: int,
                                cores: int, weight_gradient: bool = False) -> int:
    """:func:`volnet.ops.winograd_5x5.workspace` with the threads :func:`_convolve` (or the weight
    gradient of :func:`conv_backward`) gives it in a pass."""
    workers = threads.workers_for(images * out_hw[0] * out_hw[1] * filters * r * r * depth, images, cores)
    return winograd_5x5.workspace(out_hw, depth, filters, r, images, itemsize, workers, conv_rows.BLOCK_BYTES,
                                      weight_gradient)
