"""Keep the best epoch and stop early: best.safetensors, the stop rule, resume, fit() and the header field."""

import numpy as np
import pytest

from volnet import Sequential
from volnet.layers import FC, Conv2D, ReLU
from volnet.optim import make_optimizer
from volnet.train import Callback, Trainer, TrainingInterrupted, fit
from volnet.train import checkpoint as ckpt
from volnet.train.best import Watch
from volnet.train.history import EpochRecord
from toy import StopAt, toy_data

SHAPE = (6, 6, 1)


def make_trainer(out_dir=None, epochs=10, keep_best="val_accuracy", early_stop=None, callbacks=(), engine=None,
                 noisy=True, dtype="float32"):
    net = Sequential([Conv2D(3, 3, P=1), ReLU(), FC(3)], input_shape=(6, 6, 1), seed=1, dtype=dtype)
    optimizer = make_optimizer("momentum", net.params(), lr=0.3, momentum=0.9)
    return Trainer(net, optimizer, toy_data(64, shape=SHAPE), val=toy_data(24, seed=1, shape=SHAPE, noisy=noisy), epochs=epochs, batch_size=16,
                   seed=3, out_dir=out_dir, keep_best=keep_best, early_stop=early_stop, callbacks=callbacks,
                   engine=engine)


class Snapshots(Callback):
    """The weights after every epoch (on_epoch runs after the epoch's save)."""

    def __init__(self, box):
        self.box, self.weights = box, {}

    def on_epoch(self, record):
        self.weights[record.epoch] = {k: v.copy() for k, v in ckpt.network_tensors(self.box[0].net).items()}


def expected_best(history, monitor):
    """The first epoch with the best figure, by an explicit loop over the history."""
    best_epoch, best_score = None, None
    for record in history:
        value = getattr(record, monitor)
        better = best_score is None or (value > best_score if monitor == "val_accuracy" else value < best_score)
        if better:
            best_epoch, best_score = record.epoch, value
    return best_epoch, best_score


@pytest.mark.parametrize("monitor", ["val_accuracy", "val_loss"])
def test_best_file_holds_the_best_epoch_with_epoch_and_score_in_its_header(tmp_path, monitor):
    box = []
    snapshots = Snapshots(box)
    box.append(make_trainer(tmp_path, epochs=6, keep_best=monitor, callbacks=[snapshots], noisy=False))
    box[0].run()
    epoch, score = expected_best(box[0].history, monitor)
    tensors, metadata = ckpt.read(tmp_path / "best.safetensors")
    assert metadata["best"]["epoch"] == epoch and metadata["best"]["monitor"] == monitor
    assert metadata["best"]["score"] == pytest.approx(score, abs=0)
    assert metadata["position"]["epoch"] == epoch
    for name, value in snapshots.weights[epoch].items():
        np.testing.assert_array_equal(tensors[name], value, err_msg=name)
    assert "best.safetensors: epoch" in ckpt.describe(tmp_path / "best.safetensors", metadata)
    last = ckpt.describe(tmp_path / "checkpoint.safetensors", ckpt.read(tmp_path / "checkpoint.safetensors")[1])
    assert ("also the last saved" if epoch == 6 else "the last saved, 6 epochs done") in last
    # the best file is a whole checkpoint: volnet.load reads it
    import volnet

    model = volnet.load(tmp_path / "best.safetensors")
    for name, value in ckpt.network_tensors(model.net).items():
        np.testing.assert_array_equal(value, snapshots.weights[epoch][name], err_msg=name)


def test_early_stop_stops_after_patience_epochs_without_improvement(tmp_path):
    trainer = make_trainer(tmp_path, epochs=12, keep_best=None, early_stop=2)
    trainer.run()
    history = trainer.history
    assert len(history) < 12, "the noisy validation set should stop this seeded run early"
    epoch, score = expected_best(history, "val_loss")
    assert history[-1].epoch - epoch == 2  # stopped the moment 2 epochs had passed since the best
    for record in history[:-1]:  # and at no epoch before: the best so far was never 2 epochs old
        so_far, _ = expected_best([r for r in history if r.epoch <= record.epoch], "val_loss")
        assert record.epoch - so_far < 2
    assert trainer.watch.stopped and trainer.watch.epoch == epoch and trainer.watch.score == score
    assert not (tmp_path / "best.safetensors").exists()  # early stop alone keeps no best file
    _, metadata = ckpt.read(tmp_path / "checkpoint.safetensors")
    assert metadata["best"] == trainer.watch.get_config()
    # resuming a run that stopped early trains nothing more
    again = Trainer.from_checkpoint(tmp_path / "checkpoint.safetensors", toy_data(64, shape=SHAPE), val=toy_data(24, 1, SHAPE, True),
                                    epochs=20)
    again.run()
    assert len(again.history) == len(history)


@pytest.mark.parametrize("where", ["second epoch", "last epoch"])
def test_keep_best_and_early_stop_continue_across_resume(tmp_path, where):
    whole = make_trainer(tmp_path / "whole", epochs=12, early_stop=2)
    whole.run()
    assert 2 < len(whole.history) < 12
    stop_epoch = 2 if where == "second epoch" else len(whole.history)
    box = []
    box.append(make_trainer(tmp_path / "cut", epochs=12, early_stop=2, callbacks=[StopAt(box, stop_epoch, 2)]))
    with pytest.raises(TrainingInterrupted):
        box[0].run()
    resumed = Trainer.from_checkpoint(tmp_path / "cut" / "checkpoint.safetensors", toy_data(64, shape=SHAPE),
                                      val=toy_data(24, seed=1, shape=SHAPE, noisy=True))
    assert resumed.watch.patience == 2 and resumed.watch.monitor == "val_accuracy"
    resumed.run()
    assert [r.val_accuracy for r in resumed.history] == [r.val_accuracy for r in whole.history]
    assert resumed.watch == whole.watch
    for name in ("best.safetensors", "checkpoint.safetensors"):
        a, meta_a = ckpt.read(tmp_path / "whole" / name)
        b, meta_b = ckpt.read(tmp_path / "cut" / name)
        assert meta_a["best"] == meta_b["best"]
        for key in a:
            np.testing.assert_array_equal(b[key], a[key], err_msg=f"{name} {key}")


def test_fit_ends_with_the_best_weights():
    box = []
    snapshots = Snapshots(box)
    data, val = toy_data(64, shape=SHAPE), toy_data(24, seed=1, shape=SHAPE, noisy=True)
    net = Sequential([Conv2D(3, 3, P=1), ReLU(), FC(3)], input_shape=(6, 6, 1), seed=1)
    optimizer = make_optimizer("momentum", net.params(), lr=0.3, momentum=0.9)

    class Box(list):  # fit builds its own trainer: the snapshot reads the net it trains
        def __getitem__(self, i):
            return type("T", (), {"net": net})

    snapshots.box = Box()
    history = fit(net, data.images, data.labels, optimizer, epochs=8, batch_size=16, seed=3,
                  val=(val.images, val.labels), keep_best="val_loss", early_stop=3,
                  on_epoch=snapshots.on_epoch)
    epoch, _ = expected_best(history, "val_loss")
    assert epoch != history[-1].epoch, "this seeded run's best epoch should not be its last"
    for name, value in ckpt.network_tensors(net).items():
        np.testing.assert_array_equal(value, snapshots.weights[epoch][name], err_msg=name)


def test_watch_rules_and_errors():
    def record(epoch, loss, accuracy):
        return EpochRecord(epoch, 0.1, 1.0, 0.5, loss, accuracy, 1.0, 1.0)

    watch = Watch("val_loss", patience=2)
    assert [watch.update(record(e, loss, 0.5)) for e, loss in enumerate([1.0, 0.9, 0.9, 0.95], 1)] == \
        [True, True, False, False]
    assert watch.epoch == 2 and watch.stopped  # epochs 3 and 4 did not improve (0.9 equals, is not below)
    assert Watch.from_config({**watch.get_config(), "added_later": 1}) == watch
    with pytest.raises(ValueError, match="val_accuracy, val_loss"):
        Watch("accuracy")
    with pytest.raises(ValueError, match="patience"):
        Watch(patience=0)
    with pytest.raises(ValueError, match="validation images"):
        Watch().update(record(1, None, None))
    net = Sequential([FC(3)], input_shape=(6, 6, 1))
    with pytest.raises(ValueError, match="validation images"):
        Trainer(net, make_optimizer("sgd", net.params(), lr=0.1), toy_data(64, shape=SHAPE), keep_best="val_loss")


def test_checkpoints_without_the_field_still_read():
    from pathlib import Path

    old = Path(__file__).parent / "data" / "version1_mid_epoch.safetensors"
    _, metadata = ckpt.read(old)
    assert "best" not in metadata
    assert ckpt.unpack_run(*ckpt.read(old)).settings.watch is None


@pytest.mark.slow
def test_the_torch_engine_keeps_the_same_best_epoch_and_stops_at_the_same_epoch(tmp_path):
    torch_engine = pytest.importorskip("volnet.interop.torch_engine")
    runs = []
    for name, engine in (("numpy", None), ("torch", torch_engine.TorchEngine("cpu"))):
        trainer = make_trainer(tmp_path / name, epochs=12, early_stop=2, engine=engine, dtype="float64")
        trainer.run()
        runs.append(trainer)
    numpy_run, torch_run = runs
    assert 2 < len(numpy_run.history) < 12
    assert torch_run.watch.epoch == numpy_run.watch.epoch and torch_run.watch.stopped
    assert len(torch_run.history) == len(numpy_run.history)
    assert torch_run.watch.score == pytest.approx(numpy_run.watch.score, abs=1e-12)
    a, meta_a = ckpt.read(tmp_path / "numpy" / "best.safetensors")
    b, meta_b = ckpt.read(tmp_path / "torch" / "best.safetensors")
    assert meta_a["best"]["epoch"] == meta_b["best"]["epoch"]
    for key in a:
        if key.startswith("layers."):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-9, atol=1e-9, err_msg=key)
