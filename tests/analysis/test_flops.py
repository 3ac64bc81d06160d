"""Parameters, multiply-adds (MACs), FLOPs = 2*MACs and activation counts, checked on VGG-16 and identities.

The VGG-16 figures (the notes' "VGGNet" and CS231n's layer-by-layer breakdown):

* 138,357,544 parameters (torchvision's vgg16 has the same count);
* 15,470,264,320 multiply-adds per image: 15,346,630,656 in the thirteen CONVs,
  123,633,664 in the three FCs; 30,940,528,640 FLOPs counting a multiply and an
  add separately (the "15.5G MACs" / "31G FLOPs" of the literature);
* 15,237,608 activations per image counting the 224x224x3 input and every
  CONV, POOL and FC output (the notes print "24M" for that sum, an
  arithmetic slip: their own per-layer figures add up to 15.2M).
"""

from __future__ import annotations

import doctest
import json
import math
import time
import tracemalloc

import pytest

from volnet import Sequential, ShapeError, build, zoo
from volnet.analysis import analyze, analyze_layers
from volnet.layers import (FC, AvgPool, BatchNorm, Concat, Conv2D, Dropout, Flatten, GlobalAvgPool, Inception,
                           L2Pool, LocallyConnected, MaxPool, ReLU, Residual)

VGG16_PARAMS = 138_357_544
VGG16_CONV_MACS = 15_346_630_656
VGG16_FC_MACS = 123_633_664
VGG16_MACS = 15_470_264_320
VGG16_NOTES_ACTIVATIONS = 15_237_608


def _vgg16_by_formula():
    """The notes' formulas, written out: CONV (H2*W2*K)*(F*F*D1) MACs and F*F*D1*K + K params; FC fan_in*K."""
    macs = params = 0
    size, depth = 224, 3
    for filters, convs in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]:
        for _ in range(convs):
            macs += (size * size * filters) * (3 * 3 * depth)
            params += 3 * 3 * depth * filters + filters
            depth = filters
        size //= 2
    for fan_in, K in [(7 * 7 * 512, 4096), (4096, 4096), (4096, 1000)]:
        macs += fan_in * K
        params += fan_in * K + K
    return macs, params


def test_vgg16_parameters_and_macs(vgg16_layers):
    report = analyze_layers(vgg16_layers(), (224, 224, 3))
    macs, params = _vgg16_by_formula()
    assert report.total_params == VGG16_PARAMS == params
    assert report.total_macs == VGG16_MACS == macs
    assert report.total_flops == 2 * VGG16_MACS == 30_940_528_640  # FLOPs = 2 x MACs, labelled as such
    assert sum(r.macs for r in report.rows if r.kind == "conv") == VGG16_CONV_MACS
    assert sum(r.macs for r in report.rows if r.kind == "fc") == VGG16_FC_MACS
    # CS231n's breakdown: CONV3-64 [224x224x64] memory 224*224*64 = 3.2M, weights (3*3*3)*64 = 1,728
    first = report.rows[0]
    assert first.output_shape == (224, 224, 64) and first.activations == 3_211_264
    assert first.params == 1_728 + 64 and first.macs == 224 * 224 * 64 * 27
    # FC [1x1x4096] from 7x7x512: 7*7*512*4096 = 102,760,448 weights, most of the network's
    fc1 = next(r for r in report.rows if r.kind == "fc")
    assert fc1.params == 102_760_448 + 4096 and fc1.input_shape == (7, 7, 512)


def test_vgg16_activation_counts(vgg16_layers):
    report = analyze_layers(vgg16_layers(), (224, 224, 3))
    # The notes' count: the input plus every CONV, POOL and FC output, per image.
    assert report.notes_activation_values == VGG16_NOTES_ACTIVATIONS
    assert report.notes_activation_values < 24_000_000  # not the notes' misprinted "24M"
    # Every layer output plus the input: the 15 RELUs add 13,555,712 values.
    relus = sum(r.activations for r in report.rows if r.kind == "relu")
    assert relus == 13_555_712
    assert report.activation_values == VGG16_NOTES_ACTIVATIONS + relus == 28_793_320


def test_vgg16_through_the_zoo_and_allocate_false(vgg16_layers):
    net = zoo.vgg16(allocate=False)
    report = analyze(net)
    assert report.total_params == VGG16_PARAMS == net.num_params
    assert report.total_macs == VGG16_MACS
    assert report.notes_activation_values == VGG16_NOTES_ACTIVATIONS


def test_vgg16_in_milliseconds_without_allocating(vgg16_layers):
    layers = vgg16_layers()
    analyze_layers(layers, (224, 224, 3)).table()  # imports and caches warm
    tracemalloc.start()
    started = time.perf_counter()
    report = analyze_layers(layers, (224, 224, 3), batch=64)
    text, data = report.table(), report.to_dict()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Shapes only: no weights (553 MB) or activations (a 224x224x64 batch is 822 MB) allocated.
    assert peak < 2 * 2**20, f"analysis allocated {peak:,} bytes"
    assert seconds < 1.0, f"analysis took {seconds:.3f} s"
    assert "138,357,544" in text and "15,470,264,320" in text and data["totals"]["macs"] == VGG16_MACS


def test_analysis_equals_the_built_network(rng):
    """Parameter counts from hyperparameters equal what building allocates, output shapes equal."""
    for _ in range(20):
        D, size = int(rng.integers(1, 5)), int(rng.choice([8, 12, 16]))
        F = int(rng.choice([1, 3, 5]))
        layers = [Conv2D(int(rng.integers(1, 9)), F, P=(F - 1) // 2, bias=bool(rng.integers(2))), BatchNorm(),
                  ReLU(), MaxPool(2), Conv2D(int(rng.integers(1, 9)), 3, S=2, P=1, fit="crop"), Dropout(0.2),
                  AvgPool(2, fit="pad"), L2Pool(1), Flatten(), FC(int(rng.integers(1, 20))), ReLU(), FC(3)]
        net = Sequential(layers, (size, size, D))
        report = analyze(net)
        assert report.total_params == net.num_params
        assert [r.output_shape for r in report.rows] == net.shapes
        assert analyze_layers(layers, (size, size, D)).to_dict() == report.to_dict()


def test_containers_and_local_layers_match_their_built_counts():
    layers = [Conv2D(16, 3, P=1), ReLU(),
              Residual([Conv2D(16, 3, P=1), BatchNorm(), ReLU(), Conv2D(16, 3, P=1), BatchNorm()]), ReLU(),
              Residual([Conv2D(32, 3, S=2, P=1, fit="crop", bias=False), BatchNorm()],
                       shortcut=[Conv2D(32, 1, S=2, fit="crop", bias=False), BatchNorm()]),
              Inception(8, 8, 16, 4, 8, 8), Concat([[Conv2D(8, 1)], []]),
              LocallyConnected(4, 3, P=1), GlobalAvgPool(), FC(10)]
    net = Sequential(layers, (16, 16, 3))
    report = analyze(net)
    assert report.total_params == net.num_params
    top = [r for r in report.rows if r.depth == 0]
    assert [r.output_shape for r in top] == net.shapes
    # Residual = body rows + shortcut rows + the add (H*W*D adds); paths as in checkpoints
    add = next(r for r in report.rows if r.path == "5")
    assert add.kind == "residual" and add.other_ops == 8 * 8 * 32 and add.params == 0
    assert {r.path for r in report.rows if r.path.startswith("5.")} == {"5.body.1", "5.body.2", "5.shortcut.1",
                                                                         "5.shortcut.2"}
    assert {name for name, _ in layers[4].sublayers()} == {p[2:] for p in ("5.body.1", "5.body.2", "5.shortcut.1",
                                                                           "5.shortcut.2")}
    # LocallyConnected: the MACs of a CONV, H2*W2 times its parameters
    local = next(r for r in report.rows if r.kind == "local")
    conv = analyze_layers([Conv2D(4, 3, P=1)], local.input_shape).rows[0]
    assert local.macs == conv.macs and local.params == 8 * 8 * conv.params
    # Inception (3a) has GoogLeNet's 163,696 parameters on 28x28x192
    assert analyze_layers([Inception(64, 96, 128, 16, 32, 32)], (28, 28, 192)).total_params == 163_696


def test_the_notes_notation_analyses_like_layer_objects(vgg16_layers, small_layers):
    small = build("INPUT[32x32x3] -> CONV3-16 -> RELU -> POOL2 -> CONV3-32 -> RELU -> POOL2 -> FC10")
    assert analyze(small).to_dict() == analyze_layers(small_layers(), (32, 32, 3)).to_dict()
    vgg = build("INPUT[224x224x3] -> [CONV3-64 -> RELU]*2 -> POOL2 -> [CONV3-128 -> RELU]*2 -> POOL2 -> "
                       "[CONV3-256 -> RELU]*3 -> POOL2 -> [CONV3-512 -> RELU]*3 -> POOL2 -> [CONV3-512 -> RELU]*3 -> "
                       "POOL2 -> FC4096 -> RELU -> FC4096 -> RELU -> FC1000", allocate=False)
    report = analyze(vgg)
    assert (report.total_params, report.total_macs) == (VGG16_PARAMS, VGG16_MACS)


def test_fc_equals_its_conv_form():
    """The notes: FC K=4096 on 7x7x512 is CONV F=7, P=0, S=1, K=4096: same parameters and MACs."""
    fc = analyze_layers([FC(4096)], (7, 7, 512)).rows[0]
    conv = analyze_layers([Conv2D(4096, 7)], (7, 7, 512)).rows[0]
    assert conv.output_shape == (1, 1, 4096) and fc.output_shape == (4096,)
    assert fc.params == conv.params == 7 * 7 * 512 * 4096 + 4096
    assert fc.macs == conv.macs == 102_760_448


def test_other_ops_conventions():
    """Not multiply-adds: RELU one max per value, 2x2 max pooling 3 comparisons per output, bias adds."""
    report = analyze_layers([Conv2D(8, 3, P=1), ReLU(), MaxPool(2), AvgPool(2), BatchNorm(), FC(10)], (8, 8, 3))
    conv, relu, maxpool, avgpool, bn, fc = report.rows
    assert conv.macs == 8 * 8 * 8 * 27 and conv.other_ops == 8 * 8 * 8  # one bias add per output
    assert relu.macs == 0 and relu.other_ops == 8 * 8 * 8
    assert maxpool.other_ops == 4 * 4 * 8 * 3
    assert avgpool.other_ops == 2 * 2 * 8 * 4
    assert bn.params == 16 and bn.other_ops == 2 * 2 * 2 * 8
    assert fc.macs == 32 * 10 and report.total_flops == 2 * report.total_macs


def test_report_renders_as_text_and_json(small_layers):
    report = analyze_layers(small_layers(), (32, 32, 3), batch=64)
    text = report.table()
    for expected in ("INPUT", "32x32x16", "FLOPs = 2 x MACs", "MiB", "MB", "memory, train, batch 64",
                     "memory, inference, batch 64"):
        assert expected in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    assert data["totals"]["params"] == 16 * 27 + 16 + 32 * 9 * 16 + 32 + 8 * 8 * 32 * 10 + 10
    assert data["layers"][0]["receptive_field"] == {"size": [3, 3], "jump": [1, 1], "start": [0.0, 0.0]}
    assert data["memory"]["train"]["total"] == report.train.total
    assert math.prod(data["layers"][-1]["output_shape"]) == 10


def test_shape_errors_name_the_layer():
    with pytest.raises(ShapeError, match=r"layer 3 \(MaxPool\): height: \(W - F\)/S \+ 1"):
        analyze_layers([Conv2D(4, 3), ReLU(), MaxPool(2)], (9, 9, 3))
    with pytest.raises(ValueError, match="unknown optimizer"):
        analyze_layers([ReLU()], (4, 4, 1), optimizer="lion")
    with pytest.raises(ValueError, match="input_shape"):
        analyze([ReLU()])


def test_docstring_examples():
    from volnet import analysis
    from volnet.analysis import budget, compare, lints, memory, receptive_field, replay, report, units, walk

    for module in (analysis, report, memory, receptive_field, walk, lints, units, replay, budget, compare):
        result = doctest.testmod(module)
        assert result.failed == 0, f"{module.__name__}: {result.failed} failing example(s)"
