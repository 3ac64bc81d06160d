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


def test_eval_json_equals_an_independent_count(best_run, capsys):
    import numpy as np

    import volnet
    from volnet.data import load

    assert main(["eval", str(best_run / "best.safetensors"), "--json", "--top-k", "1", "2"]) == 0
    document = json.loads(capsys.readouterr().out)
    test = load("mnist5k", split="test")
    scores = volnet.load(best_run / "best.safetensors").scores(test.images)
    confusion = [[0] * 10 for _ in range(10)]
    top2 = 0
    for row, label in zip(scores.tolist(), test.labels.tolist()):
        ranked = sorted(range(10), key=lambda c: -row[c])
        confusion[label][ranked[0]] += 1
        top2 += label in ranked[:2]
    assert document["confusion"] == confusion
    assert document["top_k"] == {"1": sum(confusion[c][c] for c in range(10)) / 1000, "2": top2 / 1000}
    for c in range(10):
        predicted = sum(confusion[t][c] for t in range(10))
        p, r = confusion[c][c] / predicted, confusion[c][c] / sum(confusion[c])
        assert document["per_class"][str(c)] == {"precision": pytest.approx(p), "recall": pytest.approx(r),
                                                 "f1": pytest.approx(2 * p * r / (p + r)), "support": 100}
    assert "best.safetensors: epoch" in document["reading"] and document["images"] == 1000


def test_eval_prints_the_table_in_80_columns(best_run, capsys):
    assert main(["eval", str(best_run / "checkpoint.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "prec   rec    F1" in out and "top-1 " in out and "top-5 " in out and "macro" in out
    assert max(map(len, out.splitlines()[2:])) <= 80
