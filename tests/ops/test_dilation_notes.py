"""The notes' 1-D dilated convolution: one gap between taps."""

import numpy as np

from volnet import ops


def test_notes_one_gap_dilation_reads_every_other_input():
    # notes: dilation "1" (volnet/PyTorch dilation=2): w[0]*x[0] + w[1]*x[2] + w[2]*x[4]
    x = np.arange(1.0, 8.0).reshape(1, 1, 7, 1)
    w = np.array([2.0, -1.0, 0.5]).reshape(1, 3, 1, 1)
    out, _ = ops.conv_forward(x, w, np.zeros(1), dilation=(1, 2))
    xs = x.ravel()
    assert out.shape == (1, 1, 3, 1)
    assert out[0, 0, 0, 0] == w.ravel() @ xs[[0, 2, 4]]
    np.testing.assert_array_equal(out.ravel(), [w.ravel() @ xs[[k, k + 2, k + 4]] for k in range(3)])
    ordinary, _ = ops.conv_forward(x, w, np.zeros(1))
    assert ordinary[0, 0, 0, 0] == w.ravel() @ xs[[0, 1, 2]]  # no gap
