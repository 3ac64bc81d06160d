"""CONV backward cropped with dx_pad[:, :, pad:-pad, pad:-pad], which is empty when pad = 0."""

from correct import conv_backward_naive as right
from correct import conv_forward_naive  # noqa: F401


def conv_backward_naive(dout, cache):
    pad = cache[3]["pad"]
    dx, dw, db = right(dout, cache)
    return dx[:, :, pad:-pad, pad:-pad] if pad == 0 else dx, dw, db
