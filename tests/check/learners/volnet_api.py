"""volnet's own kernels under their own names (NHWC): a learner rewriting volnet.ops starts from these."""

from volnet.ops import (conv_backward, conv_backward_naive, conv_forward, conv_forward_naive,  # noqa: F401
                        fc_backward, fc_forward, pool_backward, pool_backward_naive, pool_forward,
                        pool_forward_naive, relu_backward, relu_forward, softmax_cross_entropy, svm_hinge)
