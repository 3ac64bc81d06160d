"""Stateless kernels on batches of volumes ``(N, H, W, D)``.

Every forward returns ``(out, cache)``; every backward takes
``(dout, cache)`` and returns the gradients. Where it matters a kernel comes
twice: a ``*_naive`` version that reads like the notes and a fast one that
tests hold equal to it.
"""

from .conv import (conv_backward, conv_backward_input_flipped, conv_backward_naive, conv_forward,
                   conv_forward_naive, im2col)
from .dense import fc_backward, fc_forward, relu_backward, relu_forward
from .local import local_backward, local_backward_naive, local_forward, local_forward_naive
from .losses import LOSSES, softmax, softmax_cross_entropy, svm_hinge
from .norm import (batchnorm_backward, batchnorm_fixed_backward, batchnorm_fixed_forward,
                   batchnorm_inference_forward, batchnorm_train_forward, dropout_backward, dropout_forward)
from .pool import pool_backward, pool_backward_naive, pool_forward, pool_forward_naive

__all__ = [
    "conv_forward", "conv_backward", "conv_forward_naive", "conv_backward_naive",
    "conv_backward_input_flipped", "im2col",
    "local_forward", "local_backward", "local_forward_naive", "local_backward_naive",
    "pool_forward", "pool_backward", "pool_forward_naive", "pool_backward_naive",
    "fc_forward", "fc_backward", "relu_forward", "relu_backward",
    "softmax", "softmax_cross_entropy", "svm_hinge", "LOSSES",
    "batchnorm_train_forward", "batchnorm_inference_forward", "batchnorm_backward",
    "batchnorm_fixed_forward", "batchnorm_fixed_backward",
    "dropout_forward", "dropout_backward",
]
