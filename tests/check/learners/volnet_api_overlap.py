"""A rewrite of volnet's naive max-pool backward (NHWC) that assigns where overlapping windows need +=."""

import numpy as np

from volnet.ops import pool_forward_naive  # noqa: F401


def pool_backward_naive(dout, cache):
    g = cache.geometry
    (Ho, Wo), (Fh, Fw), (Sh, Sw) = g.out_hw, g.size, g.stride
    N, _, _, D = cache.padded_shape
    dx = np.zeros(cache.padded_shape)
    for i in range(Ho):
        for j in range(Wo):
            for n in range(N):
                for d in range(D):
                    a, b = divmod(int(cache.switches[n, i, j, d]), Fw)
                    dx[n, i * Sh + a, j * Sw + b, d] = dout[n, i, j, d]
    return dx
