"""Lints from the notes' "Layer Sizing Patterns": each rule fires where the notes say, and only there.

* VGG-16 follows every sizing rule but one: its FC layers hold 89.4% of the
  138,357,544 parameters (123,642,856), the first alone 74.3%.
* A 227x227 input (AlexNet's) with a total stride of 32 is not a multiple of 32.
"""

from __future__ import annotations

from volnet.analysis import RULES, analyze_layers
from volnet.layers import FC, AvgPool, Conv2D, GlobalAvgPool, MaxPool, ReLU


def rules(report):
    return [lint.rule for lint in report.lints]


def test_vgg16_only_breaks_the_fc_rule(vgg16_layers):
    report = analyze_layers(vgg16_layers(), (224, 224, 3))
    assert rules(report) == ["fc-params"]
    lint = report.lints[0]
    assert "89.4%" in lint.message and "74.3%" in lint.message and lint.layer.startswith("layer 32 FC")
    assert report.params_in("fc") == 123_642_856
    assert "removable" in lint.quote and lint.quote == RULES["fc-params"]


def test_input_not_divisible_by_the_total_stride():
    layers = [Conv2D(8, 3, P=1), MaxPool(2, fit="crop")] * 5
    bad = analyze_layers(layers, (227, 227, 3))
    (lint,) = [x for x in bad.lints if x.rule == "input-size"]
    assert "227 is not a multiple of 32" in lint.message and "224, 256" in lint.message
    assert "divides by 2 0 times" in lint.message
    assert "input-size" not in rules(analyze_layers(layers, (224, 224, 3)))  # 224 = 7 * 2^5


def test_large_conv_filters_point_to_the_3x3_stack():
    report = analyze_layers([Conv2D(8, 7, P=3), ReLU(), Conv2D(8, 5, P=2)], (32, 32, 3))
    (lint,) = report.lints
    assert lint.rule == "conv-filter-size" and lint.layer.startswith("layer 1")
    assert "27C^2" in lint.message and "49C^2" in lint.message
    # an FC layer written as a CONV (the filter covers the input) is not a large filter
    assert analyze_layers([Conv2D(64, 7)], (7, 7, 512)).lints == []


def test_strided_conv_is_only_a_suggestion():
    (lint,) = analyze_layers([Conv2D(8, 3, S=2, P=1, fit="crop")], (32, 32, 3)).lints
    assert lint.rule == "conv-stride" and lint.severity == "info" and "consider" in lint.message


def test_conv_that_shrinks_the_volume():
    (lint,) = analyze_layers([Conv2D(8, 5)], (32, 32, 3)).lints
    assert lint.rule == "conv-shrinks" and "32x32 to 28x28" in lint.message and "P=2" in lint.message
    assert analyze_layers([Conv2D(8, 5, P=2)], (32, 32, 3)).lints == []


def test_pool_windows_larger_than_3x3():
    (lint,) = analyze_layers([MaxPool(4, 4)], (32, 32, 3)).lints
    assert lint.rule == "pool-window" and "4x4" in lint.message
    assert analyze_layers([MaxPool(3, 2, fit="pad"), AvgPool(2)], (32, 32, 3)).lints == []


def test_global_average_pooling_is_not_a_large_pool():
    # ... and a small FC classifier after it is what the notes recommend, not an FC-heavy head
    assert analyze_layers([Conv2D(8, 3, P=1), GlobalAvgPool(), FC(10)], (7, 7, 512)).lints == []
    assert rules(analyze_layers([Conv2D(8, 3, P=1), FC(1000)], (7, 7, 512))) == ["fc-params"]


def test_crop_that_drops_data():
    (lint,) = [x for x in analyze_layers([MaxPool(2, fit="crop")], (33, 33, 3)).lints if x.rule != "input-size"]
    assert lint.rule == "crop-drops-data" and lint.severity == "warning"
    assert "last 1 row(s) and 1 column(s)" in lint.message
    # a crop that only drops padding loses nothing: (56 - 3 + 2)/2 floors to 27, the last row read is 55
    assert "crop-drops-data" not in rules(analyze_layers([Conv2D(8, 3, S=2, P=1, fit="crop")], (56, 56, 3)))
    # a 1x1 filter with stride 2 skips rows anyway: info, not a warning
    (skip,) = [x for x in analyze_layers([Conv2D(8, 1, S=2, fit="crop")], (56, 56, 3)).lints
               if x.rule == "crop-drops-data"]
    assert skip.severity == "info"


def test_every_lint_quotes_its_rule_and_serialises():
    report = analyze_layers([Conv2D(8, 7), MaxPool(4, fit="crop"), FC(10)], (31, 31, 3))
    assert {lint.rule for lint in report.lints} >= {"conv-filter-size", "conv-shrinks", "pool-window",
                                                    "crop-drops-data", "input-size"}
    for lint in report.lints:
        assert lint.to_dict()["notes"] == RULES[lint.rule] and lint.layer in lint.text()
    assert "lints (the notes' Layer Sizing Patterns" in report.table()
