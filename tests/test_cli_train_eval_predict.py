"""The `volnet` command as Keras and PyTorch users reach for it: keep the best epoch, stop early,
evaluation with more than one number, prediction as data, exported probabilities."""

import json

import numpy as np
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "export", "report"])
def test_commands_say_which_file_they_read(best_run, tmp_path, command, capsys):
    if command == "export":
        pytest.importorskip("onnx")
    extra = {"eval": [], "export": [str(tmp_path / "m.onnx")],
             "report": ["-o", str(tmp_path / "r.html"), "--overwrite", "--test-limit", "50", "--samples", "1"]}[command]
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
    assert main(["train", "--resume", str(best_run / "best.safetensors"), "--epochs", "9"]) == 2
    assert f"continue the run with --resume {best_run / 'checkpoint.safetensors'}" in capsys.readouterr().err


def test_keep_best_needs_validation_images(tmp_path, capsys):
    assert main(["train", "--arch", "notes", "--epochs", "1", "--val-split", "0", "--keep-best",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--keep-best" in err and "--val-split" in err and "Traceback" not in err


@pytest.mark.slow
def test_eval_json_equals_an_independent_count(best_run, capsys):

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


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Five test digits as 28x28 grayscale PNGs (read back exactly) and one RGB JPEG of another size."""
    from PIL import Image

    from volnet.data import load

    folder = tmp_path_factory.mktemp("images")
    test = load("mnist5k", split="test")
    picks = [0, 150, 420, 777, 999]
    for i in picks:
        Image.fromarray(np.round(test.images[i, :, :, 0] * 255).astype(np.uint8)).save(folder / f"digit{i:04d}.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(folder / "z.jpg")
    return folder, test.images[picks]


def test_predict_json_equals_volnet_load_predict(best_run, image_folder, capsys):
    import volnet

    folder, digits = image_folder
    checkpoint = best_run / "best.safetensors"
    assert main(["predict", str(checkpoint), str(folder), "--json", "--top-k", "10"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in sorted(folder.iterdir())]  # the folder, sorted
    model = volnet.load(checkpoint)
    expected = model.predict(digits)
    for record, probabilities in zip(records, expected):
        assert record["note"] == ""
        got = {top["class"]: top["probability"] for top in record["top"]}
        assert got == {name: pytest.approx(float(p), abs=1e-6) for name, p in zip(model.classes, probabilities)}
        assert [top["class"] for top in record["top"]][0] == model.classes[int(np.argmax(probabilities))]
    assert records[-1]["note"] == "converted RGB to grayscale, resized 40x30 to 28x28 (H x W)"
    # the library call gives the same, note included
    predictions = model.predict_files([folder])
    assert [p.note for p in predictions] == [r["note"] for r in records]
    for prediction, record in zip(predictions, records):
        assert prediction.top(10) == [(t["class"], pytest.approx(t["probability"], abs=1e-6)) for t in record["top"]]


def test_predict_csv_and_text_hold_the_same_predictions(best_run, image_folder, capsys):
    import csv

    folder, _ = image_folder
    checkpoint = str(best_run / "checkpoint.safetensors")
    jpeg = str(folder / "z.jpg")
    assert main(["predict", checkpoint, str(folder / "digit0150.png"), jpeg, "--csv", "--top-k", "2"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert list(rows[0]) == ["path", "class_1", "probability_1", "class_2", "probability_2", "note"]
    assert rows[1]["note"].startswith("converted RGB to grayscale") and rows[0]["note"] == ""
    assert main(["predict", checkpoint, str(folder / "digit0150.png"), jpeg, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"{jpeg}: {rows[1]['note']}"  # the note, as predict has always printed it
    for line, row in zip([lines[0], lines[2]], rows):
        assert line == (f"{row['path']}: {row['class_1']} {float(row['probability_1']):.1%}, "
                        f"{row['class_2']} {float(row['probability_2']):.1%}")


@pytest.mark.parametrize("args, message", [
    (["--json", "--csv"], "--json and --csv: choose one"),
    (["--slide", "--json"], "leave out --slide"),
])
def test_predict_usage_errors(best_run, image_folder, args, message, capsys):
    folder, _ = image_folder
    assert main(["predict", str(best_run / "checkpoint.safetensors"), str(folder), *args]) == 2
    assert message in capsys.readouterr().err


def test_predict_names_a_missing_file_or_an_empty_folder(best_run, tmp_path, capsys):
    assert main(["predict", str(best_run / "checkpoint.safetensors"), str(tmp_path / "no.png")]) == 1
    assert "no.png does not exist" in capsys.readouterr().err
    assert main(["predict", str(best_run / "checkpoint.safetensors"), str(tmp_path)]) == 1
    assert "is a folder without .png, .jpg, .jpeg files" in capsys.readouterr().err


def test_predicting_a_folder_shows_a_progress_bar_on_a_terminal_only(best_run, image_folder, monkeypatch, capsys):
    import io
    import sys

    pytest.importorskip("tqdm")
    folder, _ = image_folder

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["predict", str(best_run / "checkpoint.safetensors"), str(folder), "--json"]) == 0
    assert "/6 " in terminal.getvalue() and "image" in terminal.getvalue()
    assert len(capsys.readouterr().out.splitlines()) == 6  # the bar is on stderr, the records on stdout
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no bar
    assert main(["predict", str(best_run / "checkpoint.safetensors"), str(folder), "--json"]) == 0
    assert sys.stderr.getvalue() == ""


@pytest.mark.slow
def test_fine_tune_onto_a_new_head_with_a_frozen_layer(best_run, tmp_path, capsys):
    source, _ = ckpt.read(best_run / "best.safetensors")
    out = tmp_path / "tuned"
    arch = "INPUT -> CONV5-12/P2 -> RELU -> POOL2 -> FC32 -> RELU -> FC"
    assert main(["train", "--arch", arch, "--epochs", "1", "--init-from", str(best_run / "best.safetensors"),
                 "--freeze", "CONV", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layers 1 copied" in printed
    assert "layer 4 (FC) initialised fresh: weight is (2352, 32) here, (2352, 10) there" in printed
    assert "layer 6 (FC) initialised fresh: the checkpoint has 4 layers" in printed
    assert "frozen: layers 1 " in printed and "layers 1-3 run in inference mode" in printed
    tuned, metadata = ckpt.read(out / "checkpoint.safetensors")
    for name in ("layers.1.weight", "layers.1.bias"):
        assert (tuned[name] == source[name]).all(), name  # bit for bit after an epoch of training
    assert metadata["train"]["frozen"] == [1]
    assert not any(name.endswith((".0", ".1")) and name.startswith("optimizer.") and tuned[name].ndim == 4
                   for name in tuned)  # no optimizer state shaped like the frozen CONV's weights
    assert main(["train", "--resume", str(out / "checkpoint.safetensors"), "--freeze", "1-2"]) == 2
    assert "--freeze cannot change a resumed run" in capsys.readouterr().err
    assert main(["train", "--arch", arch, "--epochs", "1", "--freeze", "9", "--out", str(tmp_path / "x")]) == 2
    assert "argument --freeze: layers '9' are not within 1-6" in capsys.readouterr().err
