"""Output-size arithmetic of ``volnet.shapes``: the notes' ``(W - F + 2P)/S + 1``."""

import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from volnet import shapes
from volnet.shapes import (ShapeError, as_volume_shape, conv_output_size, effective_extent, fit_axis,
                           format_volume, pair, pool_output_size)

# ---------------------------------------------------------------------------
# The numbers in the notes
# ---------------------------------------------------------------------------


def test_conv_f3_s1_p1_preserves_32x32():
    # INPUT [32x32x3] -> CONV with the common F=3, S=1, P=1 keeps 32x32.
    assert conv_output_size(32, 3, 1, 1) == 32


def test_pool_f2_s2_halves_32_to_16():
    assert pool_output_size(32, 2, 2) == 16


def test_pool_stride_defaults_to_the_window():
    assert pool_output_size(32, 2) == 16
    assert pool_output_size(9, 3) == 3


def test_numpy_example_11_f5_s2_p0_gives_4():
    assert conv_output_size(11, 5, 2, 0) == (11 - 5) // 2 + 1 == 4


def test_alexnet_first_layer_227_f11_s4_gives_55():
    assert conv_output_size(227, 11, 4, 0) == 55


def test_overlapping_pool_f3_s2():
    assert pool_output_size(55, 3, 2) == 27


def test_fc_as_conv_filter_covers_the_whole_volume():
    # FC on 7x7x512 == CONV with F=7, P=0, S=1: a single depth column fits.
    assert conv_output_size(7, 7, 1, 0) == 1


def test_keyword_names_match_the_letters():
    assert conv_output_size(W=32, F=5, S=1, P=2) == 32
    assert pool_output_size(W=32, F=2, S=2) == 16


# ---------------------------------------------------------------------------
# Dilation
# ---------------------------------------------------------------------------


def test_effective_extent_of_dilated_filters():
    assert effective_extent(3) == 3
    # The notes' one-gap filter w[0]*x[0] + w[1]*x[2] + w[2]*x[4] spans 5 inputs;
    # volnet (like PyTorch) calls it dilation=2.
    assert effective_extent(3, dilation=2) == 5
    assert effective_extent(3, dilation=3) == 7
    assert effective_extent(1, dilation=4) == 1


def test_dilated_conv_output_size_uses_the_extent():
    assert conv_output_size(7, 3, 1, 0, dilation=2) == 3  # (7 - 5)/1 + 1
    assert conv_output_size(9, 3, 1, 2, dilation=2) == 9  # P = dilation keeps the size
    assert conv_output_size(13, 3, 2, 0, dilation=3) == 4  # (13 - 7)/2 + 1


# ---------------------------------------------------------------------------
# Settings that do not fit
# ---------------------------------------------------------------------------


def test_inexact_division_raises_with_the_filled_formula_and_a_fix():
    # AlexNet's often-quoted 224x224 input does not tile with F=11, S=4.
    with pytest.raises(ShapeError) as info:
        conv_output_size(224, 11, 4, 0)
    message = str(info.value)
    assert "(224 - 11 + 2*0)/4 + 1 = 54.25" in message
    assert re.search(r"\b[PS]=\d+", message), message
    assert "fit=" in message


def test_inexact_division_suggests_a_padding_when_one_exists():
    with pytest.raises(ShapeError, match=r"\(12 - 5 \+ 2\*0\)/3 \+ 1 = 3\.33333") as info:
        conv_output_size(12, 5, 3, 0)
    assert "P=1" in str(info.value)  # (12 - 5 + 2)/3 + 1 = 4
    assert conv_output_size(12, 5, 3, 1) == 4


def test_error_names_the_layer_and_axis():
    with pytest.raises(ShapeError, match=r"^conv1: height: "):
        conv_output_size(10, 3, 2, 0, layer="conv1", axis="height")


def test_pool_error_shows_the_pool_formula_and_no_padding_hint():
    with pytest.raises(ShapeError, match=re.escape("(W - F)/S + 1 = (7 - 2)/2 + 1 = 3.5")) as info:
        pool_output_size(7, 2, 2)
    message = str(info.value)
    assert "P=" not in message  # pooling layers do not zero-pad
    assert "fit=" in message


@settings(max_examples=60, deadline=None)
@given(W=st.integers(1, 40), F=st.integers(1, 7), S=st.integers(2, 5), P=st.integers(0, 3),
       dilation=st.integers(1, 2))
def test_every_suggested_fix_makes_the_setting_valid(W, F, S, P, dilation):
    extent = effective_extent(F, dilation)
    span = W - extent + 2 * P
    assume(span >= 0 and span % S != 0)
    with pytest.raises(ShapeError, match="fit=") as info:
        conv_output_size(W, F, S, P, dilation)
    fixes = dict(re.findall(r"\b([PSF])=(\d+)", str(info.value)))
    assert fixes, str(info.value)
    for letter, value in fixes.items():
        setting = {"W": W, "F": F, "S": S, "P": P, "dilation": dilation, letter: int(value)}
        size = conv_output_size(**setting)
        used = effective_extent(setting["F"], dilation)
        assert (size - 1) * setting["S"] == W - used + 2 * setting["P"]


def test_filter_larger_than_the_input_raises():
    with pytest.raises(ShapeError, match=r"does not fit: .* < 1"):
        conv_output_size(3, 5, 1, 0)
    with pytest.raises(ShapeError, match=r"does not fit"):
        pool_output_size(2, 3, 1)


def test_dilated_filter_larger_than_the_input_names_its_span():
    with pytest.raises(ShapeError, match=r"spans 5"):
        conv_output_size(4, 3, 1, 0, dilation=2)


def test_padding_can_make_a_large_filter_fit():
    assert conv_output_size(3, 5, 1, 1) == 1


def test_fit_does_not_rescue_a_filter_that_does_not_fit():
    for fit in ("pad", "crop"):
        with pytest.raises(ShapeError, match="does not fit"):
            conv_output_size(3, 5, 1, 0, fit=fit)


@pytest.mark.parametrize("kwargs, name, low", [
    ({"S": 0}, "S", 1),
    ({"S": -2}, "S", 1),
    ({"P": -1}, "P", 0),
    ({"F": 0}, "F", 1),
    ({"W": 0}, "W", 1),
    ({"dilation": 0}, "dilation", 1),
    ({"S": 1.5}, "S", 1),
    ({"P": 0.5}, "P", 0),
])
def test_bad_hyperparameters_raise(kwargs, name, low):
    setting = {"W": 8, "F": 3, "S": 1, "P": 0, **kwargs}
    with pytest.raises(ShapeError, match=rf"\b{name} must be an integer >= {low}, got {kwargs[name]!r}"):
        conv_output_size(**setting)


def test_unknown_fit_raises():
    with pytest.raises(ValueError, match=r"fit must be one of"):
        conv_output_size(8, 3, 1, 0, fit="shrink")


# ---------------------------------------------------------------------------
# fit="pad" and fit="crop"
# ---------------------------------------------------------------------------


def test_fit_pad_and_crop_on_the_224_alexnet_input():
    assert conv_output_size(224, 11, 4, 0, fit="crop") == 54  # torch's floor
    assert conv_output_size(224, 11, 4, 0, fit="pad") == 55


def test_fit_pad_and_crop_for_pooling():
    assert pool_output_size(7, 2, 2, fit="pad") == 4
    assert pool_output_size(7, 2, 2, fit="crop") == 3
    assert pool_output_size(6, 3, 2, fit="pad") == 3
    assert pool_output_size(6, 3, 2, fit="crop") == 2


def test_fit_axis_reports_the_padding_it_uses():
    pad = fit_axis(7, 2, 2, fit="pad")
    assert (pad.size, pad.pad_before, pad.pad_after) == (4, 0, 1)  # one zero row at the bottom
    crop = fit_axis(7, 2, 2, fit="crop")
    assert (crop.size, crop.pad_before, crop.pad_after) == (3, 0, -1)  # the last row is dropped
    exact = fit_axis(32, 3, 1, 1)
    assert (exact.size, exact.pad_before, exact.pad_after) == (32, 1, 1)


@pytest.mark.parametrize("fit", [None, "pad", "crop"])
def test_fit_changes_nothing_when_the_setting_is_exact(fit):
    assert fit_axis(11, 5, 2, 0, fit=fit) == fit_axis(11, 5, 2, 0)
    assert conv_output_size(227, 11, 4, 0, fit=fit) == 55


@settings(max_examples=80, deadline=None)
@given(W=st.integers(1, 30), F=st.integers(1, 6), S=st.integers(1, 4), P=st.integers(0, 3),
       dilation=st.integers(1, 3), fit=st.sampled_from(["pad", "crop"]))
def test_fit_matches_its_definition(W, F, S, P, dilation, fit):
    """crop: the most windows that lie inside the padded input; pad: the fewest that reach its last row,
    less a last window that would start past the input's last real row (PyTorch's ceil_mode rule)."""
    extent = effective_extent(F, dilation)
    assume(extent <= W + 2 * P)
    result = fit_axis(W, F, S, P, dilation, fit=fit)
    n = 1
    if fit == "crop":
        while n * S + extent <= W + 2 * P:
            n += 1
    else:
        while (n - 1) * S + extent < W + 2 * P:
            n += 1
        if (n - 1) * S >= W + P and (W + 2 * P - extent) % S:
            n -= 1
    assert result.size == n
    assert result.pad_before == P
    # The padded (or cropped) input is exactly as long as the windows need.
    assert W + result.pad_before + result.pad_after == (n - 1) * S + extent


# ---------------------------------------------------------------------------
# pair, format_volume, as_volume_shape
# ---------------------------------------------------------------------------


def test_pair_normalises_int_or_pair():
    assert pair(3) == (3, 3)
    assert pair((2, 5)) == (2, 5)
    assert pair([4, 1]) == (4, 1)
    assert pair(np.int64(2)) == (2, 2)
    assert all(type(v) is int for v in pair(np.int64(2)))


def test_pair_rejects_wrong_length_and_non_integers():
    with pytest.raises(ValueError, match=r"stride must be an int or a \(height, width\) pair"):
        pair((1, 2, 3), "stride")
    with pytest.raises(ValueError, match=r"pad must be integers, got 1\.5"):
        pair(1.5, "pad")
    with pytest.raises(ValueError, match=r"size must be integers"):
        pair((2, 2.5), "size")


def test_format_volume_writes_the_notes_notation():
    assert format_volume((32, 32, 12)) == "32x32x12"
    assert format_volume((1, 1, 10)) == "1x1x10"
    assert format_volume([227, 227, 3]) == "227x227x3"


def test_as_volume_shape_accepts_height_width_depth():
    assert as_volume_shape((32, 32, 3)) == (32, 32, 3)
    assert as_volume_shape([227, 227, 3]) == (227, 227, 3)
    assert as_volume_shape(np.array([5, 7, 1])) == (5, 7, 1)


@pytest.mark.parametrize("shape", [(32, 32), (1, 32, 32, 3), (32, 0, 3), (32, 32, -3), 32])
def test_as_volume_shape_rejects_bad_shapes(shape):
    with pytest.raises(ShapeError, match=r"input_shape must be \(height, width, depth\)"):
        as_volume_shape(shape)


def test_as_volume_shape_names_the_argument():
    with pytest.raises(ShapeError, match=r"^image must be"):
        as_volume_shape((28, 28), name="image")


def test_as_volume_shape_rejects_fractional_sizes():
    with pytest.raises(ShapeError):
        as_volume_shape((32.5, 32, 3))


# ---------------------------------------------------------------------------
# Suggestions in constant time (issue 21): no loop over a user's number
# ---------------------------------------------------------------------------


def _naive_pads(W, extent, S, P):
    valid = [p for p in range(0, max(P, extent) + S + 1) if (W - extent + 2 * p) % S == 0
             and (W - extent + 2 * p) >= 0]
    return sorted(valid, key=lambda p: (abs(p - P), p))[:1]


def _naive_filters(W, F, S, P, dilation):
    valid = [f for f in range(1, W + 2 * P + 1)
             if (W - effective_extent(f, dilation) + 2 * P) % S == 0 and effective_extent(f, dilation) <= W + 2 * P]
    return sorted(valid, key=lambda f: (abs(f - F), f))[:1]


def _naive_strides(W, extent, S, P):
    span = W - extent + 2 * P
    if span < 0:
        return []
    valid = [s for s in range(1, span + 1) if span % s == 0] or [1]
    return sorted(valid, key=lambda s: (abs(s - S), s))[:1]


@settings(max_examples=300, deadline=None)
@given(W=st.integers(1, 60), F=st.integers(1, 12), S=st.integers(1, 40), P=st.integers(0, 30),
       dilation=st.integers(1, 6))
def test_closed_form_suggestions_equal_the_exhaustive_search(W, F, S, P, dilation):
    extent = effective_extent(F, dilation)
    assert shapes._nearest_valid_pads(W, extent, S, P) == _naive_pads(W, extent, S, P)
    assert shapes._nearest_valid_filters(W, F, S, P, dilation) == _naive_filters(W, F, S, P, dilation)
    assert shapes._nearest_valid_strides(W, extent, S, P) == _naive_strides(W, extent, S, P)


@pytest.mark.parametrize("W, F, S, P, dilation", [(8, 2, 38217527819970, 0, 1), (8, 3, 2, 2**70, 1),
                                                  (9, 2, 2**70 + 1, 2**69, 3), (10**30, 4, 10**29 + 7, 0, 1)])
def test_suggestions_for_huge_numbers_are_valid(W, F, S, P, dilation):
    """Numbers an exhaustive search never finishes with (it hung `volnet summary`, `eval` and the checkpoint fuzz)."""
    extent = effective_extent(F, dilation)
    for letter, found in (("P", shapes._nearest_valid_pads(W, extent, S, P)),
                          ("F", shapes._nearest_valid_filters(W, F, S, P, dilation)),
                          ("S", shapes._nearest_valid_strides(W, extent, S, P))):
        setting = {"W": W, "F": F, "S": S, "P": P, "dilation": dilation}
        for value in found:
            setting[letter] = value
            used = effective_extent(setting["F"], dilation)
            assert (W - used + 2 * setting["P"]) % setting["S"] == 0 and W - used + 2 * setting["P"] >= 0


def test_summary_of_a_huge_pooling_stride_returns_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    result = subprocess.run([sys.executable, "-m", "volnet", "summary", "INPUT[8x8x1] -> POOL2/S38217527819970 -> FC3"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("volnet summary: error: ")
    assert "= 1 + 6/38217527819970 is not an integer" in result.stderr
