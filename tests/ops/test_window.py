"""The strided-window helper: output sizes, padding and its adjoint, taps, phases, windows, im2row and col2im.

Every index function is checked against the definition in window.py's
docstring (tap (u, v) of output (i, j) reads padded row i*S + u*dilation,
column j*S + v*dilation), and every gradient helper against its forward by
the adjoint identity <A x, y> == <x, A^T y>.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import window_settings

from volnet.ops import window
from volnet.shapes import ShapeError


def setup(setting):
    """``(x, g, xp)``: a random batch, its geometry and the padded batch, for a window_settings draw."""
    rng = np.random.default_rng(setting["seed"])
    x = rng.standard_normal(setting["x_shape"])
    g = window.geometry(x.shape, setting["F"], **setting["hyper"])
    return x, g, window.pad_spatial(x, g.pads)


@pytest.mark.parametrize("x_shape, size, stride, pad, fit, out_hw, pads", [
    ((1, 32, 32, 3), 5, 1, 2, None, (32, 32), (2, 2, 2, 2)),  # the notes' CONV F=5, P=2 keeps 32x32
    ((1, 7, 7, 1), 3, 2, 1, None, (4, 4), (1, 1, 1, 1)),  # (7 - 3 + 2)/2 + 1 = 4
    ((2, 33, 33, 3), 2, 2, 0, "crop", (16, 16), (0, -1, 0, -1)),  # the 33rd row is read by no window
    ((2, 33, 33, 3), 2, 2, 0, "pad", (17, 17), (0, 1, 0, 1)),  # one zero row makes room for a 17th
    ((1, 6, 9, 1), (3, 1), (1, 2), (0, 1), None, (4, 6), (0, 0, 1, 1)),  # pairs: (6-3)/1+1, (9-1+2)/2+1
])
def test_geometry_output_size_and_pads(x_shape, size, stride, pad, fit, out_hw, pads):
    g = window.geometry(x_shape, size, stride, pad, fit=fit)
    assert (g.out_hw, g.pads, g.in_shape) == (out_hw, pads, x_shape)
    assert window.pad_spatial(np.zeros(x_shape), g.pads).shape[1:3] == \
        (x_shape[1] + pads[0] + pads[1], x_shape[2] + pads[2] + pads[3])


def test_geometry_refuses_a_single_volume_and_says_how_to_batch_it():
    with pytest.raises(ShapeError, match=r"conv1: expected a batch of volumes \(N, H, W, D\), got an array of "
                                         r"shape \(32, 32, 3\); add a batch axis with x\[None\]"):
        window.geometry((32, 32, 3), 3, layer="conv1")


def test_geometry_takes_lists_as_pairs():
    assert window.geometry((1, 8, 8, 1), [3, 1], [1, 1], [1, 0]) == window.geometry((1, 8, 8, 1), (3, 1), 1, (1, 0))


def test_pad_spatial_fills_the_border_with_the_value_and_keeps_the_middle():
    x = np.arange(1.0, 7.0).reshape(1, 2, 3, 1)
    xp = window.pad_spatial(x, (1, 2, 0, 1), value=-5.0)
    assert xp.shape == (1, 5, 4, 1)
    np.testing.assert_array_equal(xp[0, 1:3, :3, 0], x[0, :, :, 0])
    assert (xp[0, 0] == -5).all() and (xp[0, 3:] == -5).all() and (xp[0, :, 3] == -5).all()
    assert window.pad_spatial(x, (0, 0, 0, 0)) is x  # nothing to pad: no copy


def test_pad_spatial_crops_negative_amounts():
    x = np.arange(20.0).reshape(1, 4, 5, 1)
    np.testing.assert_array_equal(window.pad_spatial(x, (0, -1, -2, 1))[0, :, :, 0],
                                  np.pad(x[0, :3, 2:, 0], ((0, 0), (0, 1))))


@settings(max_examples=60, deadline=None)
@given(window_settings())
def test_unpad_spatial_is_the_adjoint_of_pad_spatial(setting):
    x, g, xp = setup(setting)
    y = np.random.default_rng(setting["seed"] + 1).standard_normal(xp.shape)
    back = window.unpad_spatial(y, g)
    assert back.shape == x.shape
    assert np.isclose(np.vdot(xp, y), np.vdot(x, back))
    if min(g.pads) >= 0:
        np.testing.assert_array_equal(window.unpad_spatial(xp, g), x)  # padding then unpadding gives x back


@pytest.mark.parametrize("pads", [(-1, 1, -2, 0), (2, -1, 0, -3), (-1, -1, -1, -1), (0, 0, 3, 1)])
def test_unpad_spatial_is_the_adjoint_of_any_pad_or_crop(pads, rng):
    """Pads that no geometry makes (crops at the top and left) too: unpad_spatial reads only pads and in_shape."""
    x = rng.standard_normal((2, 5, 6, 3))
    xp = window.pad_spatial(x, pads)
    g = window.Geometry(in_shape=x.shape, size=(1, 1), stride=(1, 1), dilation=(1, 1), pads=pads, out_hw=(0, 0))
    y = rng.standard_normal(xp.shape)
    assert np.isclose(np.vdot(xp, y), np.vdot(x, window.unpad_spatial(y, g)))


@settings(max_examples=60, deadline=None)
@given(window_settings())
def test_windows_and_taps_read_where_the_definition_says(setting):
    _, g, xp = setup(setting)
    (Ho, Wo), (Fh, Fw), (Sh, Sw), (dh, dw) = g.out_hw, g.size, g.stride, g.dilation
    view = window.windows(xp, g)
    assert view.shape == (xp.shape[0], Ho, Wo, Fh, Fw, xp.shape[3]) and not view.flags.writeable
    for u in range(Fh):
        for v in range(Fw):
            expected = np.stack([np.stack([xp[:, i * Sh + u * dh, j * Sw + v * dw] for j in range(Wo)], axis=1)
                                 for i in range(Ho)], axis=1)
            np.testing.assert_array_equal(view[:, :, :, u, v], expected)
            rows, cols = window.tap(g, u, v)
            np.testing.assert_array_equal(xp[:, rows, cols], expected)


@settings(max_examples=60, deadline=None)
@given(window_settings())
def test_phases_hold_every_padded_row_and_each_tap_reads_one_block(setting):
    _, g, xp = setup(setting)
    Sh, Sw, N, Hs, Ws, D = window.phase_buffer_shape(g, xp.shape)
    assert (Sh, Sw, N, D) == (*g.stride, xp.shape[0], xp.shape[3])
    assert Hs * Sh >= xp.shape[1] > (Hs - 1) * Sh and Ws * Sw >= xp.shape[2] > (Ws - 1) * Sw
    phases = np.full((Sh, Sw, N, Hs, Ws, D), np.nan)
    for a in range(Sh):
        for b in range(Sw):
            part = xp[:, a::Sh, b::Sw]
            phases[a, b, :, :part.shape[1], :part.shape[2]] = part
    np.testing.assert_array_equal(window.interleave_phases(phases, xp.shape), xp)
    for u in range(g.size[0]):
        for v in range(g.size[1]):
            a, b, rows, cols = window.tap_phase(g, u, v)
            np.testing.assert_array_equal(phases[a, b][:, rows, cols], xp[:, window.tap(g, u, v)[0],
                                                                          window.tap(g, u, v)[1]])


@settings(max_examples=60, deadline=None)
@given(window_settings())
def test_im2row_lists_every_window_and_col2im_is_its_adjoint(setting):
    _, g, xp = setup(setting)
    rows = window.im2row(xp, g)
    N, (Ho, Wo), (Fh, Fw), D = xp.shape[0], g.out_hw, g.size, xp.shape[3]
    assert rows.shape == (N * Ho * Wo, Fh * Fw * D) and rows.flags.c_contiguous
    np.testing.assert_array_equal(rows[-1], window.windows(xp, g)[N - 1, Ho - 1, Wo - 1].ravel())
    r = np.random.default_rng(setting["seed"] + 2).standard_normal(rows.shape)
    back = window.col2im(r, g, xp.shape)
    assert back.shape == xp.shape
    assert np.isclose(np.vdot(rows, r), np.vdot(xp, back))


def test_col2im_counts_how_many_windows_read_each_input():
    """All-ones gradients add up, at each input, the number of windows that read it: 1, 2, 1 for F=2, S=1 on 3."""
    g = window.geometry((1, 3, 3, 1), 2, 1)
    counts = window.col2im(np.ones((4, 4)), g, (1, 3, 3, 1))[0, :, :, 0]
    np.testing.assert_array_equal(counts, np.outer([1, 2, 1], [1, 2, 1]))


@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (2, 0, 0, 3), (1, -1, -2, 1), (0, 0, 0, 0), (-1, 0, 0, -1)])
def test_pad_spatial_into_a_given_array_equals_a_new_one(pads):
    x = np.arange(2 * 5 * 6 * 3, dtype=np.float32).reshape(2, 5, 6, 3)
    expected = window.pad_spatial(x, pads, value=-1.0)
    out = np.full(expected.shape, 7.0, np.float32)
    assert window.pad_spatial(x, pads, value=-1.0, out=out) is out
    np.testing.assert_array_equal(out, expected)


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_pad_images_equals_pad_spatial(data):
    """Each part's fill (pad_images: compiled for C-contiguous batches, NumPy's slices for strided ones) writes
    exactly pad_spatial's images: any pads, negative ones (cropped) included, over garbage."""
    N, H, W = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
    D = data.draw(st.sampled_from([1, 3, 8, 33]))
    top, bottom = data.draw(st.integers(-(H - 1), 3)), data.draw(st.integers(0, 3))
    left, right = data.draw(st.integers(-(W - 1), 3)), data.draw(st.integers(-1, 3))
    if W + min(left, 0) + min(right, 0) < 1:
        right = 0
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = np.random.default_rng(N * H * W * D).standard_normal((N, H, 2 * W, D)).astype(dtype)
    x = x[:, :, ::2] if data.draw(st.booleans()) else np.ascontiguousarray(x[:, :, :W])
    expected = window.pad_spatial(x, (top, bottom, left, right))
    xp = np.full_like(expected, np.nan)
    start, stop = data.draw(st.integers(0, N - 1)), N
    window.pad_images(x, xp, (top, bottom, left, right), start, stop)
    np.testing.assert_array_equal(xp[start:stop], expected[start:stop])
    assert np.isnan(xp[:start]).all()
