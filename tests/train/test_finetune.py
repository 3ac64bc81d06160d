"""Fine-tuning: weights from another run for the layers that match, frozen layers bit for bit, on both engines."""

import numpy as np
import pytest

from volnet import Sequential
from volnet.analysis import analyze
from volnet.data import Dataset
from volnet.layers import FC, BatchNorm, Conv2D, Dropout, MaxPool, ReLU
from volnet.optim import make_optimizer
from volnet.train import Trainer, TrainingInterrupted, fit
from volnet.train import checkpoint as ckpt
from volnet.train.finetune import freeze, init_from, parse_layers
from toy import StopAt


def toy_data(n=48, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.random((n, 8, 8, 2), dtype=np.float32) * 0.3
    for c in range(classes):
        images[labels == c, c * 2: c * 2 + 2] += 0.7
    return Dataset(images, labels, tuple(map(str, range(classes))))


def make_net(classes=3, dtype="float32", seed=1):
    # No bias right before BatchNorm (its gradient is zero up to rounding, which Adam turns into full steps).
    return Sequential([Conv2D(4, 3, P=1, bias=False), BatchNorm(), ReLU(), MaxPool(2, 2), Conv2D(4, 3, P=1),
                       ReLU(), Dropout(0.2), FC(6), ReLU(), FC(classes)], input_shape=(8, 8, 2), seed=seed,
                      dtype=dtype)


def arrays(net):
    return {name: value.copy() for name, value in ckpt.network_tensors(net).items()}


def trained_checkpoint(tmp_path, classes=3):
    net = make_net(classes)
    Trainer(net, make_optimizer("adam", net.params(), lr=0.01), toy_data(classes=classes), epochs=1, batch_size=16,
            out_dir=tmp_path / "source").run()
    return tmp_path / "source" / "checkpoint.safetensors"


def test_init_from_copies_matching_layers_and_lists_the_new_head(tmp_path):
    source = trained_checkpoint(tmp_path)
    saved, _ = ckpt.read(source)
    net = make_net(classes=4, seed=9)
    head = net.layers[9].params()[0].value.copy()
    transfer = init_from(net, source)
    assert transfer.copied == [1, 2, 5, 8]
    assert transfer.fresh == [(10, "weight is (6, 4) here, (6, 3) there")]
    mine = ckpt.network_tensors(net)
    for name, value in mine.items():
        if not name.startswith("layers.10."):
            np.testing.assert_array_equal(value, saved[name], err_msg=name)
    np.testing.assert_array_equal(net.layers[9].params()[0].value, head)  # untouched, as initialised


@pytest.mark.parametrize("engine_name", ["numpy", "torch"])
def test_frozen_layers_stay_bit_for_bit_and_hold_no_optimizer_state(tmp_path, engine_name):
    engine = None
    if engine_name == "torch":
        engine = pytest.importorskip("volnet.interop.torch_engine").TorchEngine("cpu")
    net = make_net(classes=4, seed=9)
    init_from(net, trained_checkpoint(tmp_path))
    assert freeze(net, "1-5") == [1, 2, 5] and net.frozen_prefix == 7  # ReLU, Dropout before FC 8 too
    before = arrays(net)
    optimizer = make_optimizer("adam", net.trainable_params(), lr=0.05)
    trainer = Trainer(net, optimizer, toy_data(classes=4), val=toy_data(16, 1, classes=4), epochs=2, batch_size=16,
                      out_dir=tmp_path / "tuned", engine=engine)
    trainer.run()
    after = arrays(net)
    for name in before:
        layer = int(name.split(".")[1])
        if layer <= 5:  # weights and BatchNorm's running averages
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        else:
            assert not np.array_equal(after[name], before[name]), name
    assert len(optimizer.params) == 4  # FC 8 and FC 10, weights and biases
    tensors, metadata = ckpt.read(tmp_path / "tuned" / "checkpoint.safetensors")
    assert sorted({k.split(".")[2] for k in tensors if k.startswith("optimizer.")}) == ["0", "1", "2", "3"]
    assert metadata["train"]["frozen"] == [1, 2, 5]
    if engine_name == "numpy":  # backpropagation stopped at FC 8: no gradient was ever computed below it
        assert all(p.grad is None for layer in net.layers[:7] for p in layer.params())


@pytest.mark.slow
def test_both_engines_fine_tune_alike(tmp_path):
    pytest.importorskip("torch")
    from volnet.interop.torch_engine import TorchEngine

    runs = []
    for engine in (None, TorchEngine("cpu")):
        net = make_net(classes=3, dtype="float64")
        net.layers[6] = Dropout(0.0)  # the engines draw dropout masks from different generators
        net = Sequential(net.layers, input_shape=(8, 8, 2), seed=1, dtype="float64")
        freeze(net, "CONV")
        optimizer = make_optimizer("momentum", net.trainable_params(), lr=0.05, momentum=0.9)
        Trainer(net, optimizer, toy_data(), epochs=2, batch_size=16, engine=engine).run()
        runs.append(arrays(net))
    for name in runs[0]:
        np.testing.assert_allclose(runs[1][name], runs[0][name], rtol=1e-9, atol=1e-9, err_msg=name)


def test_a_frozen_run_resumes_exactly(tmp_path):
    def trainer(out, callbacks=()):
        net = make_net()
        freeze(net, [1, 2])
        return Trainer(net, make_optimizer("adam", net.trainable_params(), lr=0.01), toy_data(), epochs=3,
                       batch_size=16, seed=4, out_dir=out, callbacks=callbacks)

    whole = trainer(tmp_path / "whole")
    whole.run()
    box = []
    box.append(trainer(tmp_path / "cut", [StopAt(box, 2, 1)]))
    with pytest.raises(TrainingInterrupted):
        box[0].run()
    resumed = Trainer.from_checkpoint(tmp_path / "cut" / "checkpoint.safetensors", toy_data())
    assert resumed.net.frozen == [1, 2] and len(resumed.optimizer.params) == len(resumed.net.trainable_params())
    resumed.run()
    expected, got = arrays(whole.net), arrays(resumed.net)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_fit_freeze_and_layer_trainable():
    data = toy_data()
    net = make_net()
    before = arrays(net)
    fit(net, data.images, data.labels, make_optimizer("sgd", net.params(), lr=0.1), epochs=1, batch_size=16,
        freeze="1-2")
    after = arrays(net)
    assert all(np.array_equal(after[k], before[k]) for k in before if k.split(".")[1] in ("1", "2"))
    assert not np.array_equal(after["layers.5.weight"], before["layers.5.weight"])
    other = make_net()
    other.layers[4].trainable = False  # Keras' way; a frozen CONV after trainable ones still passes gradients on
    weight = other.layers[4].params()[0].value.copy()
    first = other.layers[0].params()[0].value.copy()
    fit(other, data.images, data.labels, make_optimizer("sgd", other.trainable_params(), lr=0.1), epochs=1,
        batch_size=16)
    np.testing.assert_array_equal(other.layers[4].params()[0].value, weight)
    assert not np.array_equal(other.layers[0].params()[0].value, first)


def test_memory_analysis_counts_frozen_layers():
    net = make_net()
    plain = analyze(net, batch=4, optimizer="adam").memory("train")
    freeze(net, "1-5")
    frozen = analyze(net, batch=4, optimizer="adam").memory("train")
    values = sum(p.value.size for layer in net.layers[:5] for p in layer.params())
    assert plain.optimizer_cache - frozen.optimizer_cache == 2 * values * 4  # adam: two float32 arrays per value
    assert plain.grads - frozen.grads == values * 4  # no gradient below the first trainable layer


def test_parse_layers_and_clear_refusals():
    net = make_net()
    assert parse_layers("1-3, 5", net) == [1, 2, 3, 5]
    assert parse_layers("conv,BATCHNORM", net) == [1, 2, 5]
    with pytest.raises(ValueError, match="not within 1-10"):
        parse_layers("4-11", net)
    with pytest.raises(ValueError, match="neither layer numbers .* nor a kind of layer of this net"):
        parse_layers("LSTM", net)
    with pytest.raises(ValueError, match="nothing would train"):
        freeze(make_net(), "1-10")
    with pytest.raises(ValueError, match="layer 2 \\(BatchNorm\\) is frozen but comes after a trainable layer"):
        bn = make_net()
        bn.layers[0].trainable = True
        freeze(bn, [2])
    net = make_net()
    optimizer = make_optimizer("sgd", net.params(), lr=0.1)
    freeze(net, "1")
    with pytest.raises(ValueError, match="build it on net.trainable_params"):
        Trainer(net, optimizer, toy_data())
    net.forward(toy_data().images[:2], train=True)
    with pytest.raises(RuntimeError, match="layer 1 is frozen and ran in inference mode"):
        net.backward(np.ones((2, 3), np.float32), input_grad=True)


def test_memory_estimate_of_frozen_first_layers_matches_measurement():
    """The frozen first layers keep no caches: the estimate of what a training forward keeps, and of the
    backward peak, follows what tracemalloc measures (within the 25% the analysis tests allow)."""
    import tracemalloc

    from volnet.ops.losses import softmax_cross_entropy

    def build():
        return Sequential([Conv2D(16, 3, P=1), ReLU(), MaxPool(2, 2), Conv2D(32, 3, P=1), ReLU(), MaxPool(2, 2),
                           FC(10)], (32, 32, 3))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    tracemalloc.start()
    try:
        net = build()
        freeze(net, "1-3")
        optimizer = make_optimizer("momentum", net.trainable_params(), lr=1e-3)
        for _ in range(2):  # warm-up steps: gradients and optimizer state exist, as in any later step
            _, dscores = softmax_cross_entropy(net.forward(x, train=True), y)
            net.backward(dscores, input_grad=False)
            optimizer.step()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        scores = net.forward(x, train=True)
        kept = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.reset_peak()
        net.backward(np.ones_like(scores), input_grad=False)
        backward_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    estimate = analyze(net, batch=64, optimizer="momentum").train
    plain = analyze(build(), batch=64, optimizer="momentum").train
    assert 0.75 <= estimate.activations / kept <= 1.25, (estimate.activations, kept)
    assert 0.75 <= estimate.backward_peak / backward_peak <= 1.25, (estimate.backward_peak, backward_peak)
    assert estimate.activations < plain.activations / 2  # the first CONV's padded input and RELU output are gone
