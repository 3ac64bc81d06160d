"""Class weights: the loss as defined (weighted mean), its gradient, both engines, the checkpoint, the CLI."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet import Sequential
from volnet.data import Dataset
from volnet.gradcheck import numerical_gradient, relative_error
from volnet.layers import FC, Conv2D, ReLU
from volnet.ops.losses import softmax_cross_entropy, svm_hinge
from volnet.optim import make_optimizer
from volnet.train import Trainer, balanced_class_weight
from volnet.train import checkpoint as ckpt


def by_loops(scores, labels, weights, loss):
    """sum_i w_i L_i / sum_i w_i, one image at a time."""
    total = weight_sum = 0.0
    for row, label, w in zip(scores.tolist(), labels.tolist(), weights.tolist()):
        if loss == "softmax":
            top = max(row)
            each = -(row[label] - top - np.log(sum(np.exp(s - top) for s in row)))
        else:
            each = sum(max(0.0, s - row[label] + 1.0) for j, s in enumerate(row) if j != label)
        total += w * each
        weight_sum += w
    return total / weight_sum


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["softmax", "svm"]), st.integers(1, 8), st.integers(2, 5), st.integers(0, 2**31))
def test_weighted_loss_is_the_weighted_mean_and_its_gradient_checks(loss, N, C, seed):
    rng = np.random.default_rng(seed)
    scores, labels = rng.normal(size=(N, C)), rng.integers(0, C, N)
    weights = rng.uniform(0.2, 3.0, N)
    function = softmax_cross_entropy if loss == "softmax" else svm_hinge
    value, dscores = function(scores, labels, weights=weights)
    assert value == pytest.approx(by_loops(scores, labels, weights, loss), rel=1e-12, abs=1e-12)
    moved = scores.copy()
    numeric = numerical_gradient(lambda: function(moved, labels, weights=weights)[0], moved)
    assert relative_error(dscores, numeric) < 1e-6
    plain, dplain = function(scores, labels)
    same, dsame = function(scores, labels, weights=np.full(N, 2.5))  # equal weights: the plain mean
    assert same == pytest.approx(plain, rel=1e-12) and np.allclose(dsame, dplain, rtol=1e-12, atol=1e-15)


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="weights must be 2 finite numbers > 0"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weights=np.array([1.0, 0.0]))
    net = Sequential([FC(3)], input_shape=(2, 2, 1))
    data = Dataset(np.zeros((4, 2, 2, 1), np.float32), np.array([0, 1, 2, 0]), tuple("abc"))
    with pytest.raises(ValueError, match="class_weight must be 3 finite numbers > 0"):
        Trainer(net, make_optimizer("sgd", net.params(), lr=0.1), data, class_weight=[1, 2])
    with pytest.raises(ValueError, match="class 2 has no training images"):
        balanced_class_weight(np.array([0, 1, 1]), 3)


def test_balanced_weights_are_n_over_classes_times_count():
    labels = np.array([0, 0, 0, 1, 2, 2])
    assert balanced_class_weight(labels, 3).tolist() == [6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)]


def unbalanced(n=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.minimum(rng.integers(0, 5, n), 2)  # class 2 three times as frequent as 0 and 1
    images = rng.random((n, 6, 6, 1)) * 0.3
    images[labels == 0, :3] += 0.6
    images[labels == 1, 3:] += 0.6
    return Dataset(images.astype(np.float32), labels, ("a", "b", "c"))


def trainer(engine=None, out=None, weights="balanced"):
    data = unbalanced()
    net = Sequential([Conv2D(3, 3, P=1), ReLU(), FC(3)], input_shape=(6, 6, 1), seed=2, dtype="float64")
    weights = balanced_class_weight(data.labels, 3) if weights == "balanced" else weights
    return Trainer(net, make_optimizer("momentum", net.params(), lr=0.05, momentum=0.9), data,
                   val=unbalanced(21, seed=1), epochs=2, batch_size=16, seed=3, engine=engine, out_dir=out,
                   class_weight=weights)


def test_class_weights_change_the_training_loss_as_defined(tmp_path):
    weighted, plain = trainer(), trainer(weights=None)
    weighted.run()
    plain.run()
    assert weighted.history[0].train_loss != pytest.approx(plain.history[0].train_loss)
    loss, _ = weighted.evaluate(weighted.val)  # the validation loss is the weighted mean, by the loop above
    scores = weighted.net.forward(weighted.val.images, train=False)
    w = weighted.class_weight[weighted.val.labels]
    assert loss == pytest.approx(by_loops(scores, weighted.val.labels, w, "softmax"), rel=1e-10)
    assert weighted.history[-1].val_loss == pytest.approx(loss, rel=1e-12)


def test_both_engines_train_alike_with_class_weights():
    torch_engine = pytest.importorskip("volnet.interop.torch_engine")
    numpy_run, torch_run = trainer(), trainer(torch_engine.TorchEngine("cpu"))
    numpy_run.run()
    torch_run.run()
    for a, b in zip(numpy_run.history, torch_run.history):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-9)
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-9)
    ours, theirs = ckpt.network_tensors(numpy_run.net), ckpt.network_tensors(torch_run.net)
    for name in ours:
        np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-9, atol=1e-9, err_msg=name)


def test_class_weights_are_part_of_the_run(tmp_path):
    first = trainer(out=tmp_path, weights=[1.0, 2.0, 0.5])
    first.run()
    _, metadata = ckpt.read(tmp_path / "checkpoint.safetensors")
    assert metadata["train"]["class_weight"] == [1.0, 2.0, 0.5]
    resumed = Trainer.from_checkpoint(tmp_path / "checkpoint.safetensors", unbalanced(), epochs=3)
    assert resumed.class_weight.tolist() == [1.0, 2.0, 0.5] and resumed.engine.class_weight is resumed.class_weight


@pytest.mark.slow
def test_cli_class_weight_file_and_eval(tmp_path, capsys):
    from volnet.cli import main
    from volnet.data import load

    weights = {str(c): 1.0 + c / 10 for c in range(10)}
    (tmp_path / "w.json").write_text(json.dumps(weights))
    out = tmp_path / "run"
    assert main(["train", "--arch", "notes", "--epochs", "1", "--class-weight", str(tmp_path / "w.json"),
                 "--out", str(out)]) == 0
    assert "class weights: 0 1, 1 1.1, 2 1.2" in capsys.readouterr().out
    assert main(["eval", str(out / "checkpoint.safetensors"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    import volnet

    test = load("mnist5k", split="test")
    scores = volnet.load(out / "checkpoint.safetensors").scores(test.images)
    w = np.array(list(weights.values()))[test.labels]
    assert document["class_weight"] == list(weights.values())
    assert document["loss"] == pytest.approx(by_loops(scores.astype(np.float64), test.labels, w, "softmax"), rel=1e-5)
    correct = scores.argmax(axis=1) == test.labels
    assert document["weighted_accuracy"] == pytest.approx((w * correct).sum() / w.sum())
    (tmp_path / "bad.json").write_text('{"0": 1}')
    assert main(["train", "--arch", "notes", "--epochs", "1", "--class-weight", str(tmp_path / "bad.json"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "gives no weight for class '1'" in capsys.readouterr().err
