"""The checkpoint format module: a run packed into (tensors, metadata) and back, old files, the file names.

``data/version1_mid_epoch.safetensors`` was written by volnet before the format
lived in one module (``make_trainer(epochs=3)`` of ``test_trainer.py``, stopped
after batch 3 of epoch 2, with ``extra_metadata={"data": {"name": "toy",
"classes": ["a", "b", "c"]}}`` and ``time.perf_counter`` stepping 0.25 s a
call). It holds every kind of tensor (weights, BatchNorm buffers, optimizer
caches, the epoch's order) and header field, so it pins the on-disk format
(VERSION 1) byte for byte.
"""

from pathlib import Path

import numpy as np
import pytest

from volnet.train import CheckpointError, RunFolder, Trainer
from volnet.train import checkpoint as ckpt
from volnet.train import run_folder

from toy import StopAt, toy_data

from .test_trainer import make_trainer

VERSION_1 = Path(__file__).parent / "data" / "version1_mid_epoch.safetensors"


def interrupted(tmp_path, epoch=2, batch=3):
    """A trainer stopped mid-epoch (its checkpoint written), with a fact of its own in the header."""
    box = []
    trainer = make_trainer(tmp_path, callbacks=[StopAt(box, epoch, batch)])
    box.append(trainer)
    trainer.extra_metadata["data"] = {"name": "toy", "classes": ["top", "bottom", "none"]}
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    return trainer


def test_a_version_1_checkpoint_unpacks_and_packs_back_to_the_same_bytes(tmp_path):
    tensors, metadata = ckpt.read(VERSION_1)
    run = ckpt.unpack_run(tensors, metadata, str(VERSION_1), images=96)
    assert (run.position.epoch, run.position.batch, run.position.seen, run.position.correct) == (1, 3, 48, 46)
    assert run.extra == {"data": {"name": "toy", "classes": ["a", "b", "c"]}}
    assert [r.epoch for r in run.history] == [1]
    assert (run.settings.epochs, run.settings.batch_size, run.settings.loss, run.settings.seed) == (3, 16,
                                                                                                      "softmax", 7)
    repacked, again = ckpt.pack_run(run)
    assert sorted(repacked) == sorted(tensors)
    assert ckpt.save(tmp_path / "again.safetensors", repacked, again).read_bytes() == VERSION_1.read_bytes()


def test_a_version_1_checkpoint_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "resumed"
    trainer = Trainer.from_checkpoint(VERSION_1, toy_data(), val=toy_data(32, seed=1), out_dir=out)
    assert (trainer.position.epoch, trainer.position.batch) == (1, 3)
    history = trainer.run()
    assert [r.epoch for r in history] == [1, 2, 3]
    _, metadata = ckpt.read(out / ckpt.CHECKPOINT_NAME)
    assert metadata["position"]["epoch"] == 3 and metadata["data"]["classes"] == ["a", "b", "c"]


def test_unpack_gives_back_the_run_pack_was_given(tmp_path):
    trainer = interrupted(tmp_path)
    tensors, metadata = trainer.state()
    run = ckpt.unpack_run(tensors, metadata, images=len(trainer.train.labels))
    saved = ckpt.network_tensors(trainer.net)
    for name, value in ckpt.network_tensors(run.net).items():
        np.testing.assert_array_equal(value, saved[name])
    np.testing.assert_array_equal(run.position.order, trainer.position.order)
    assert (run.position.epoch, run.position.batch, run.position.loss_sum, run.position.seen) == \
        (trainer.position.epoch, trainer.position.batch, trainer.position.loss_sum, trainer.position.seen)
    assert run.rng.bit_generator.state == trainer.rng.bit_generator.state
    assert {k: g.bit_generator.state for k, g in ckpt.layer_generators(run.net).items()} == \
        {k: g.bit_generator.state for k, g in ckpt.layer_generators(trainer.net).items()} != {}
    assert run.history.records == trainer.history.records
    assert run.optimizer.get_config() == trainer.optimizer.get_config()
    for mine, theirs in zip(run.optimizer.state_dict()["arrays"]["velocity"],
                            trainer.optimizer.state_dict()["arrays"]["velocity"], strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert run.settings.schedule.get_config() == trainer.schedule.get_config()
    assert run.settings.augment.get_config() == trainer.augment.get_config()
    assert run.settings.normalizer.get_config() == trainer.normalizer.get_config()
    assert run.extra == {"data": {"name": "toy", "classes": ["top", "bottom", "none"]}}
    assert ckpt.pack_run(run)[1] == metadata


def test_unpack_refuses_a_model_only_checkpoint(tmp_path):
    tensors, metadata = ckpt.read(VERSION_1)
    model_only = {key: metadata[key] for key in ("architecture", "normalizer", "data")}
    with pytest.raises(CheckpointError, match="holds a model but no training state"):
        ckpt.unpack_run(tensors, model_only, "model")


def test_unpack_refuses_an_epoch_order_for_other_data():
    tensors, metadata = ckpt.read(VERSION_1)
    with pytest.raises(CheckpointError, match="'trainer.order' shuffles 96 images but the training set has 40"):
        ckpt.unpack_run(tensors, metadata, "old", images=40)


def test_from_checkpoint_takes_what_was_already_read_and_reads_nothing(tmp_path, monkeypatch):
    state = ckpt.read(VERSION_1)

    def no_second_read(path):
        raise AssertionError(f"{path} read twice")

    monkeypatch.setattr(ckpt, "read", no_second_read)
    trainer = Trainer.from_checkpoint(VERSION_1, toy_data(), out_dir=tmp_path, state=state)
    assert (trainer.position.epoch, trainer.position.batch) == (1, 3)


@pytest.mark.slow
def test_volnet_train_resume_reads_the_checkpoint_once(tmp_path, monkeypatch, capsys):
    from volnet.cli import main

    out = tmp_path / "run"
    assert main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC", "--epochs", "1", "--val-split", "0",
                 "--out", str(out)]) == 0
    reads, real_read = [], ckpt.read

    def counted(path):
        reads.append(Path(path))
        return real_read(path)

    monkeypatch.setattr(ckpt, "read", counted)
    assert main(["train", "--resume", str(out / ckpt.CHECKPOINT_NAME), "--epochs", "2"]) == 0
    assert reads == [out / ckpt.CHECKPOINT_NAME]
    assert "history: history.json and history.csv beside it" in capsys.readouterr().out


def test_the_run_folder_names_its_files_from_the_format_module(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.checkpoint == tmp_path / ckpt.CHECKPOINT_NAME
    assert folder.history_files == tuple(tmp_path / name for name in ckpt.HISTORY_NAMES)
    assert run_folder.CHECKPOINT_NAME is ckpt.CHECKPOINT_NAME  # one definition, imported
    assert {Path(name).suffix for name in ckpt.HISTORY_NAMES} == {".json", ".csv"}  # what History.save writes
