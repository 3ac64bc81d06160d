"""The known-mistake detector on values computed here, independently, the wrong way (in-process, no child)."""

import numpy as np
import pytest

from volnet.check import cases, functions, hints


def _inputs(family, config):
    spec = next(spec for spec in functions.SPECS.values() if spec.family == family and spec.kind != "forward")
    return functions.with_dout(spec, config, cases.arrays(family, config))


def _conv_loop(x, w, dout, stride, pad, step):
    """dx and dw of CONV by loops; ``step`` is the window's stride as the (maybe wrong) code reads it."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    HH, WW = w.shape[2:]
    for n, f, i, j in np.ndindex(*dout.shape):
        window = (n, slice(None), slice(i * step, i * step + HH), slice(j * step, j * step + WW))
        dw[f] += xp[window] * dout[n, f, i, j]
        dxp[window] += w[f] * dout[n, f, i, j]
    return dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw


CONV = dict(x_shape=[2, 2, 7, 5], w_shape=[3, 2, 3, 3], stride=2, pad=1, seed=3)


def test_the_right_loops_match_no_mistake_and_their_values_are_volnets():
    data = _inputs("conv", CONV)
    dx, dw = _conv_loop(data["x"], data["w"], data["dout"], 2, 1, step=2)
    want = functions.expected("conv", CONV, data)
    np.testing.assert_allclose(dx, want["dx"], atol=1e-12)
    np.testing.assert_allclose(dw, want["dw"], atol=1e-12)
    assert hints.diagnose("conv", CONV, data, "dx", dx + 0.1) is None  # wrong, but not a known mistake


def test_a_backward_that_ignores_the_stride_is_named():
    data = _inputs("conv", CONV)
    dx, dw = _conv_loop(data["x"], data["w"], data["dout"], 2, 1, step=1)
    assert hints.diagnose("conv", CONV, data, "dx", dx) == hints.STRIDE
    assert hints.diagnose("conv", CONV, data, "dw", dw) == hints.STRIDE


def test_a_backward_with_flipped_filters_is_named():
    data = _inputs("conv", CONV)
    flipped = {**data, "w": data["w"][:, :, ::-1, ::-1]}
    dx, _ = _conv_loop(flipped["x"], flipped["w"], data["dout"], 2, 1, step=2)
    assert hints.diagnose("conv", CONV, data, "dx", dx) == hints.FLIPPED


def test_pooling_that_ignores_the_stride_is_named():
    config = dict(x_shape=[1, 2, 5, 5], pool_height=2, pool_width=2, stride=3, seed=0)
    data = _inputs("pool", config)
    x = data["x"]
    out = np.array([[[[x[n, c, i:i + 2, j:j + 2].max() for j in range(2)] for i in range(2)]
                     for c in range(2)] for n in range(1)])
    assert hints.diagnose("pool", config, data, "out", out) == hints.STRIDE


@pytest.mark.parametrize("family", ["softmax", "svm"])
def test_a_loss_not_divided_by_n_is_named(family):
    config = dict(x_shape=[3, 4], seed=1)
    data = _inputs(family, config)
    want = functions.expected(family, config, data)
    assert hints.diagnose(family, config, data, "loss", want["loss"] * 3) == hints.PER_N.format(q="the loss")
    assert hints.diagnose(family, config, data, "dx", want["dx"] * 3) == hints.PER_N.format(q="dx")


def test_db_with_one_row_per_image_is_named():
    config = dict(x_shape=[3, 2, 4], w_shape=[8, 5], seed=2)
    data = _inputs("affine", config)
    assert hints.diagnose("affine", config, data, "db", data["dout"]) == \
        hints.BATCH_SUM.format(q="db", what="weights")
