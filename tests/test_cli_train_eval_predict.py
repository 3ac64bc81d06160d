"""The `volnet` command as Keras and PyTorch users reach for it: keep the best epoch, stop early,
evaluation with more than one number, prediction as data, exported probabilities."""

import json

import pytest

from volnet.cli import main
from volnet.train import checkpoint as ckpt


@pytest.fixture(scope="module")
def best_run(tmp_path_factory):
    """A short run on the bundled digits that keeps its best epoch and stops early."""
    out = tmp_path_factory.mktemp("best")
    code = main(["train", "--arch", "notes", "--epochs", "4", "--lr", "0.02", "--keep-best", "--early-stop", "1",
                 "--out", str(out)])
    assert code == 0
    return out


def test_keep_best_and_early_stop_from_the_command_line(best_run, capsys):
    _, best = ckpt.read(best_run / "best.safetensors")
    _, last = ckpt.read(best_run / "checkpoint.safetensors")
    history = last["history"]
    accuracies = [r["val_accuracy"] for r in history]
    assert best["best"]["epoch"] == 1 + accuracies.index(max(accuracies))
    assert best["best"]["score"] == max(accuracies) and best["best"]["monitor"] == "val_accuracy"
    assert last["best"]["patience"] == 1
    assert len(history) < 4, "this seeded run stops early"
    assert last["best"]["stopped"] and len(history) == best["best"]["epoch"] + 1


@pytest.mark.parametrize("command", ["eval", "export", "report"])
def test_commands_say_which_file_they_read(best_run, tmp_path, command, capsys):
    if command == "export":
        pytest.importorskip("onnx")
    extra = {"eval": [], "export": [str(tmp_path / "m.onnx")],
             "report": ["-o", str(tmp_path / "r.html"), "--test-limit", "50", "--samples", "1"]}[command]
    epoch = ckpt.read(best_run / "best.safetensors")[1]["best"]["epoch"]
    assert main([command, str(best_run / "best.safetensors"), *extra]) == 0
    out = capsys.readouterr().out
    assert f"reading {best_run / 'best.safetensors'}: epoch {epoch}, the run's best by val_accuracy" in out
    assert main([command, str(best_run / "checkpoint.safetensors"), *extra]) == 0
    assert f"reading {best_run / 'checkpoint.safetensors'}: " in capsys.readouterr().out


def test_resuming_a_run_that_stopped_early_trains_nothing(best_run, capsys):
    _, last = ckpt.read(best_run / "checkpoint.safetensors")
    assert main(["train", "--resume", str(best_run / "checkpoint.safetensors"), "--epochs", "9"]) == 0
    out = capsys.readouterr().out
    assert last["best"]["stopped"] and "stopped early" in out and "nothing to train" in out
    assert main(["train", "--resume", str(best_run / "checkpoint.safetensors"), "--keep-best", "val_loss"]) == 2
    assert "--keep-best cannot change a resumed run" in capsys.readouterr().err


def test_keep_best_needs_validation_images(tmp_path, capsys):
    assert main(["train", "--arch", "notes", "--epochs", "1", "--val-split", "0", "--keep-best",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--keep-best" in err and "--val-split" in err and "Traceback" not in err
