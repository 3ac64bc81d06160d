"""The widely copied max-pool backward: the window's mask is assigned with `=`, which overlapping windows overwrite."""

import numpy as np

from correct import max_pool_forward_naive  # noqa: F401 -- its cache is what the backward takes


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, Ho, Wo = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw]
                    mask = window == np.max(window)
                    dx[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw] = mask * dout[n, c, i, j]
    return dx
