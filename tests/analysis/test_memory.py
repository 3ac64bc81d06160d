"""Memory: the notes' counts for VGG-16, volnet's engine count, budgets, and estimates against measurement.

Figures checked:

* VGG-16, the notes' count: 15,237,608 activations per image x 4 bytes =
  60,950,432 bytes = 58.1 MiB forward (binary units, as the notes divide by
  1024); 138,357,544 parameters x 4 = 553,430,176 bytes = 527.8 MiB, tripled in
  training with momentum (weights, gradients, step cache: 1,660,290,528 bytes).
* The small net ``INPUT[32x32x3] -> CONV3-16 -> RELU -> POOL2 -> CONV3-32 -> RELU
  -> POOL2 -> FC10`` keeps 147,288 bytes per image for backprop: the padded
  inputs of the two CONVs (34x34x3, 18x18x16), the two RELU outputs, the two
  POOLs' switches (1 byte each), the last POOL's output (kept by the FC) and the
  scores; the notes' simple count is 33,802 values (135,208 bytes).
* Estimates against tracemalloc's measurement of the real passes, at batch 64:
  kept after the training forward pass, peak during it, peak during backward,
  peak in inference, and the whole step (with weights, gradients, optimizer
  state): each within 25% (when written, all within 3%: the estimate replays
  the kernels' allocations, im2col blocks and padded copies included).
"""

from __future__ import annotations

import numpy as np
import pytest

from volnet import Sequential
from volnet.analysis import (analyze, analyze_layers, batch_fit, bytes_per_value, format_bytes, max_batch_size,
                             parse_budget)
from volnet.layers import FC, AvgPool, BatchNorm, Conv2D, Dropout, L2Pool, MaxPool, ReLU
from volnet.ops.conv_plan import plan_conv
from volnet.ops.window import geometry

TOLERANCE = 0.25


def close(estimate: int, measured: int, what: str):
    ratio = estimate / measured
    assert 1 - TOLERANCE <= ratio <= 1 + TOLERANCE, \
        f"{what}: estimated {estimate:,} bytes, measured {measured:,} ({ratio:.2f})"


# -- the notes' counts -----------------------------------------------------------

def test_vgg16_memory_as_the_notes_count_it(vgg16_layers):
    report = analyze_layers(vgg16_layers(), (224, 224, 3), optimizer="momentum")
    forward = report.notes_activation_values * report.bytes_per_value
    assert forward == 60_950_432 and format_bytes(forward) == "58.1 MiB (61.0 MB)"
    train, inference = report.train, report.inference
    assert train.params == 553_430_176 and format_bytes(train.params).startswith("527.8 MiB")
    # "the memory to store the parameter vector alone must usually be multiplied by a factor of at least 3"
    assert train.params + train.grads + train.optimizer_cache == 3 * 553_430_176 == 1_660_290_528
    assert inference.grads == inference.optimizer_cache == 0
    assert train.data == 224 * 224 * 3 * 4
    for optimizer, factor in [("sgd", 2), ("momentum", 3), ("nesterov", 3), ("adagrad", 3), ("rmsprop", 3),
                              ("adam", 4)]:
        m = report.memory("train", optimizer=optimizer)
        assert m.params + m.grads + m.optimizer_cache == factor * 553_430_176, optimizer


def test_bytes_per_value_by_dtype(small_layers):
    assert [bytes_per_value(d) for d in ("float16", "float32", "float64")] == [2, 4, 8]
    assert bytes_per_value(np.float64) == bytes_per_value(np.dtype("float64")) == 8
    report = analyze_layers(small_layers(), (32, 32, 3), batch=8)
    m32, m64 = report.memory("train"), report.memory("train", dtype="float64")
    assert m64.params == 2 * m32.params and m64.data == 2 * m32.data
    # float64 doubles every value; MaxPool's switches stay 1 byte each
    assert m64.activations == 2 * m32.activations - 8 * (16 * 16 * 16 + 8 * 8 * 32)


def test_what_the_engine_keeps_for_backprop(small_layers):
    report = analyze_layers(small_layers(), (32, 32, 3), batch=64)
    N, b = 64, 4
    expected = {
        "1": N * 34 * 34 * 3 * b,   # CONV keeps its zero-padded input (P=1: a copy)
        "2": N * 32 * 32 * 16 * b,  # RELU keeps its output
        "3": N * 16 * 16 * 16,      # MaxPool keeps its switches, uint8
        "4": N * 18 * 18 * 16 * b,  # padded input of the second CONV
        "5": N * 16 * 16 * 32 * b,
        "6": N * 8 * 8 * 32,
        "7": N * 8 * 8 * 32 * b,    # FC keeps its input, the last POOL's output
    }
    assert report.train.kept_by == expected
    assert report.train.activations == sum(expected.values()) + N * 10 * b == N * 147_288 == 9_426_432
    # the notes' simple count: input + every CONV, POOL and FC output
    assert report.notes_activation_values == 3072 + 16384 + 4096 + 8192 + 2048 + 10 == 33_802
    # inference: CONV1 -> RELU1 run fused (one output volume), so the largest input + output pair is
    # RELU1's output and POOL1's (32x32x16 + 16x16x16); where the direct kernel runs CONV1, it pools too, and
    # the largest pair is CONV2's step's (16x16x16 in, 8x8x32 out; the batch itself is the caller's)
    pooled = plan_conv(geometry((N, 32, 32, 3), 3, 1, 1), 16, np.float32, 2, network_pass=True).forward == "direct"
    largest = 16 * 16 * 16 + 8 * 8 * 32 if pooled else 32 * 32 * 16 + 16 * 16 * 16
    assert report.inference.activations == N * largest * b


def test_an_array_kept_by_two_layers_is_counted_once():
    # RELU keeps its output; the unpadded CONV after it keeps the same array as its input
    report = analyze_layers([Conv2D(8, 3, P=1), ReLU(), Conv2D(8, 3), FC(10)], (16, 16, 3), batch=4)
    assert "3" not in report.train.kept_by and report.train.kept_by["2"] == 4 * 16 * 16 * 8 * 4


def test_memory_grows_with_the_batch(vgg16_layers):
    report = analyze_layers(vgg16_layers(), (224, 224, 3))
    small, large = report.memory("train", batch=8), report.memory("train", batch=16)
    assert large.data == 2 * small.data and large.activations == 2 * small.activations
    assert large.params == small.params and large.total > small.total


# -- budgets -----------------------------------------------------------------------

@pytest.mark.parametrize("budget, expected", [
    ("12GB", 12 * 10**9), ("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29), ("64 KiB", 65536), ("2gib", 2 * 2**30),
    ("100", 100), (1000, 1000), ("0.5TB", 5 * 10**11), ("7B", 7),
])
def test_parse_budget(budget, expected):
    assert parse_budget(budget) == expected


@pytest.mark.parametrize("budget", ["12 parsecs", "-1GB", "", "GB", "1.2.3GB", True, None, -5, float("nan"), [12]])
def test_parse_budget_rejects(budget):
    with pytest.raises(ValueError, match="budget"):
        parse_budget(budget)


def test_max_batch_size_fits_exactly(vgg16_layers):
    report = analyze_layers(vgg16_layers(), (224, 224, 3))
    fit = batch_fit(report, "12GB")
    assert fit.batch == max_batch_size(report, "12GB") > 0
    total = report.memory("train", batch=fit.batch).total
    assert total <= 12 * 10**9 < report.memory("train", batch=fit.batch + 1).total
    assert "12.0 GB" in fit.explanation
    # inference keeps no caches, gradients or step cache: a far larger batch fits
    assert max_batch_size(report, "12GB", mode="inference") > 2 * fit.batch
    # more memory never means a smaller batch; Adam's second state array costs batch size
    assert max_batch_size(report, "24GB") > fit.batch >= max_batch_size(report, "12GB", optimizer="adam")


def test_max_batch_size_zero_explains_why(vgg16_layers):
    report = analyze_layers(vgg16_layers(), (224, 224, 3))
    fit = batch_fit(report, "500MB")  # 553 MB of weights alone
    assert fit.batch == 0 and "even the parameters do not fit" in fit.explanation
    fit = batch_fit(report, "560MB", mode="inference")  # the weights fit, one image does not
    assert fit.batch == 0 and "one volume needs" in fit.explanation


def test_max_batch_size_takes_a_network_or_layers(small_layers):
    net = Sequential(small_layers(), (32, 32, 3))
    assert max_batch_size(net, "64MiB") == max_batch_size(small_layers(), 64 * 2**20, input_shape=(32, 32, 3)) > 1


# -- estimates against measurement ----------------------------------------------------

@pytest.mark.slow
def test_small_net_estimate_matches_measurement(small_layers, measure):
    """The brief's net at batch 64: training (caches kept + output, peaks) and inference."""
    net = Sequential(small_layers(), (32, 32, 3))
    measured = measure(net, 64, optimizer="momentum")
    report = analyze(net, batch=64, optimizer="momentum")
    train, inference = report.train, report.inference
    close(train.activations, measured["train_kept"], "kept after forward(train=True)")
    close(train.forward_peak, measured["train_forward_peak"], "peak during forward(train=True)")
    close(train.backward_peak, measured["backward_peak"], "peak during backward")
    close(inference.activations + inference.workspace, measured["inference_peak"], "peak in inference")
    # the notes' inference rule alone (largest input + output pair) is a lower bound: with CONV1 -> RELU1
    # fused, im2col's workspace is most of this small net's peak
    assert inference.activations < measured["inference_peak"]
    close(train.total, measured["step_total"], "whole training step with momentum")


def _nets():
    """Name -> (layers, input volume, optimizer): every layer kind, and every optimizer's step, once."""
    nets = {
        "batchnorm-dropout": ([Conv2D(16, 3, P=1), BatchNorm(), ReLU(), Dropout(0.3), MaxPool(2), FC(64),
                               BatchNorm(), ReLU(), Dropout(0.5), FC(10)], (32, 32, 3), "adam"),
        "pools-strides": ([Conv2D(16, 3, P=1), MaxPool(3, 2, fit="crop"), Conv2D(16, 3, P=1), AvgPool(3, 2, P=1),
                           Conv2D(16, 3, S=2, P=1, fit="crop"), L2Pool(2), Conv2D(16, 1), FC(10)], (32, 32, 8),
                          "nesterov"),
    }
    # 5x5 CONVs of 64 channels take the general Winograd (forward, dx, dw), the 3x3 the compiled one
    nets["winograd-5x5"] = ([Conv2D(64, 3, P=1), ReLU(), Conv2D(64, 5, P=2), ReLU(), MaxPool(2), FC(10)],
                            (16, 16, 3), "momentum")
    from volnet import layers

    if all(hasattr(layers, n) for n in ("Residual", "Inception", "Concat", "GlobalAvgPool", "LocallyConnected")):
        L = layers
        nets["residual"] = ([Conv2D(16, 3, P=1), ReLU(),
                             L.Residual([Conv2D(16, 3, P=1), BatchNorm(), ReLU(), Conv2D(16, 3, P=1), BatchNorm()]),
                             ReLU(),
                             L.Residual([Conv2D(32, 3, S=2, P=1, fit="crop"), BatchNorm(), ReLU(),
                                         Conv2D(32, 3, P=1), BatchNorm()],
                                        shortcut=[Conv2D(32, 1, S=2, fit="crop"), BatchNorm()]),
                             ReLU(), L.GlobalAvgPool(), FC(10)], (16, 16, 3), "sgd")
        nets["inception-local"] = ([Conv2D(16, 3, P=1), ReLU(), L.Inception(8, 8, 16, 4, 8, 8), MaxPool(2),
                                    L.Concat([[Conv2D(8, 1)], []]), L.LocallyConnected(8, 3, P=1), ReLU(),
                                    L.GlobalAvgPool(), FC(10)], (16, 16, 3), "rmsprop")
    return nets


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_nets()))
def test_estimates_match_measurement_for_every_layer_kind(name, measure):
    layers, shape, optimizer = _nets()[name]
    net = Sequential(layers, shape)
    measured = measure(net, 32, optimizer=optimizer)
    report = analyze(net, batch=32, optimizer=optimizer)
    close(report.train.activations, measured["train_kept"], f"{name}: kept after forward")
    close(report.train.forward_peak, measured["train_forward_peak"], f"{name}: forward peak")
    close(report.train.backward_peak, measured["backward_peak"], f"{name}: backward peak")
    close(report.inference.activations + report.inference.workspace, measured["inference_peak"],
          f"{name}: inference peak")
    close(report.train.total, measured["step_total"], f"{name}: whole step with {optimizer}")


def test_the_cores_are_an_argument_of_the_estimate(monkeypatch):
    # each thread of a network pass has its own im2col blocks: more cores, more workspace
    from volnet.ops import threads

    layers = [Conv2D(64, 3, P=1), ReLU(), Conv2D(64, 3, P=1), ReLU(), MaxPool(2), FC(10)]
    one, two = (analyze_layers(layers, (32, 32, 3), batch=64, cores=c) for c in (1, 2))
    assert one.train.workspace < two.train.workspace and one.train.params == two.train.params
    assert one.memory(cores=2) == two.train
    monkeypatch.setattr(threads, "cores", lambda: 2)  # None: this machine's, asked once, at analysis
    assert analyze_layers(layers, (32, 32, 3), batch=64).train == two.train
    assert max_batch_size(layers, "64MiB", input_shape=(32, 32, 3), cores=1) >= max_batch_size(
        layers, "64MiB", input_shape=(32, 32, 3), cores=2)
