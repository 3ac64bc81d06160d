"""Trainer: exact resume, atomic checkpoints, divergence, history, mismatched architectures."""

import json

import numpy as np
import pytest

from volnet import Sequential, files
from volnet.data import Augment, HorizontalFlip, Normalizer, RandomCrop
from volnet.layers import FC, BatchNorm, Conv2D, Dropout, GlobalAvgPool, MaxPool, ReLU
from volnet.optim import CosineAnnealing, make_optimizer
from volnet.train import CheckpointError, History, Trainer, TrainingDiverged
from volnet.train import checkpoint as ckpt
from toy import StopAt, toy_data


def make_trainer(out_dir, callbacks=(), epochs=3, optimizer="momentum", data=None):
    data = data or toy_data()
    net = Sequential([Conv2D(4, 3, P=1), BatchNorm(), ReLU(), MaxPool(2, 2), Dropout(0.3), FC(3)],
                     input_shape=(8, 8, 1), seed=1)
    kwargs = {"momentum": 0.9} if optimizer == "momentum" else {}
    opt = make_optimizer(optimizer, net.params(), lr=0.05, **kwargs)
    return Trainer(net, opt, data, val=toy_data(32, seed=1), epochs=epochs, batch_size=16,
                   schedule=CosineAnnealing(0.05, T=epochs), augment=Augment([RandomCrop(pad=1), HorizontalFlip()]),
                   normalizer=Normalizer.fit(data.images), seed=7, out_dir=out_dir, callbacks=callbacks)


def final_tensors(trainer):
    return {k: v.copy() for k, v in ckpt.network_tensors(trainer.net).items()}


@pytest.mark.parametrize("stop_epoch, stop_batch", [(2, 3), (1, 6)])  # mid-epoch, and the last batch of epoch 1
def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path, stop_epoch, stop_batch):
    straight = make_trainer(tmp_path / "straight")
    straight.run()

    box = []
    interrupted = make_trainer(tmp_path / "interrupted", callbacks=[StopAt(box, stop_epoch, stop_batch)])
    box.append(interrupted)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    _, metadata = ckpt.read(tmp_path / "interrupted" / "checkpoint.safetensors")
    assert (metadata["position"]["epoch"], metadata["position"]["batch"]) == (stop_epoch - 1, stop_batch)

    resumed = Trainer.from_checkpoint(tmp_path / "interrupted" / "checkpoint.safetensors", toy_data(),
                                      val=toy_data(32, seed=1))
    resumed.run()
    expected, got = final_tensors(straight), final_tensors(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert [r.train_loss for r in resumed.history] == pytest.approx([r.train_loss for r in straight.history])
    assert [r.val_accuracy for r in resumed.history] == [r.val_accuracy for r in straight.history]


def test_resume_can_extend_a_finished_run(tmp_path):
    first = make_trainer(tmp_path, epochs=2)
    first.run()
    more = Trainer.from_checkpoint(tmp_path / "checkpoint.safetensors", toy_data(), epochs=3)
    more.run()
    assert [r.epoch for r in more.history] == [1, 2, 3]


def test_training_learns_and_writes_history(tmp_path):
    trainer = make_trainer(tmp_path, epochs=4, optimizer="adam")
    history = trainer.run()
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].val_accuracy > 0.9
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in saved] == [1, 2, 3, 4]
    csv_lines = (tmp_path / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,lr,train_loss") and len(csv_lines) == 5
    with pytest.raises(ValueError, match=".json or .csv"):
        history.save(tmp_path / "history.txt")
    assert History.from_list(saved).records == history.records


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.run()
    path = tmp_path / "checkpoint.safetensors"
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        trainer.save()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".volnet.lock", "checkpoint.safetensors", "history.csv",
                                                          "history.json"]


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    data = toy_data()
    data.images[5, 2, 2, 0] = np.nan
    trainer = make_trainer(tmp_path, data=data)
    trainer.normalizer = None
    with pytest.raises(TrainingDiverged, match=r"NaN/Inf at epoch 1, batch \d+.*lower the learning rate"):
        trainer.run()


def test_loading_into_a_different_architecture_names_the_tensor_and_shapes(tmp_path):
    make_trainer(tmp_path, epochs=1).run()
    tensors, _ = ckpt.read(tmp_path / "checkpoint.safetensors")
    other = Sequential([Conv2D(6, 3, P=1), BatchNorm(), ReLU(), MaxPool(2, 2), Dropout(0.3), FC(3)],
                       input_shape=(8, 8, 1))
    with pytest.raises(CheckpointError, match=r"'layers.1.weight' has shape \(3, 3, 1, 4\).*layer 1 \(Conv2D\) "
                                              r"expects \(3, 3, 1, 6\)"):
        ckpt.load_network_tensors(other, tensors)


@pytest.mark.parametrize("content, message", [(None, "does not exist"), (b"not a checkpoint", "not a readable")])
def test_unreadable_checkpoints_are_explained(tmp_path, content, message):
    path = tmp_path / "checkpoint.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        ckpt.read(path)


def test_foreign_safetensors_file_is_not_a_checkpoint(tmp_path):
    import safetensors.numpy

    path = tmp_path / "model.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a volnet checkpoint"):
        ckpt.read(path)


def test_bad_trainer_arguments(tmp_path):
    data = toy_data()
    net = Sequential([FC(3)], input_shape=(8, 8, 1))
    opt = make_optimizer("sgd", net.params(), lr=0.1)
    with pytest.raises(ValueError, match="loss"):
        Trainer(net, opt, data, loss="mse")
    with pytest.raises(ValueError, match=r"images are \(8, 8, 1\) but the network expects \(4, 4, 1\)"):
        Trainer(Sequential([FC(3)], input_shape=(4, 4, 1)), opt, data)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_net_ending_in_global_average_pooling_trains(tmp_path, engine):
    """GAP's 1 x 1 x classes output is the class scores: the loss reads it as N x classes (issue 21's note)."""
    if engine == "torch":
        pytest.importorskip("torch")
        from volnet.interop.torch_engine import TorchEngine
    net = Sequential([Conv2D(4, 3, P=1), ReLU(), Conv2D(3, 1), GlobalAvgPool()], input_shape=(8, 8, 1), seed=1)
    trainer = Trainer(net, make_optimizer("sgd", net.params(), lr=0.1), toy_data(), val=toy_data(24, seed=1),
                      epochs=2, batch_size=16, seed=3, out_dir=tmp_path,
                      engine=TorchEngine("cpu") if engine == "torch" else None)
    history = trainer.run()
    assert len(history) == 2 and all(np.isfinite(r.train_loss) and np.isfinite(r.val_loss) for r in history)
