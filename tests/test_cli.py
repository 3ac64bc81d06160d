"""The `volnet` command: train, eval, predict, summary, resume, errors and exit codes."""

import numpy as np
import pytest

from volnet.cli import main
from volnet.data import load
from volnet.ops import threads, winograd


@pytest.mark.slow
def test_bundled_digits_split():
    train, test = load("mnist5k", split="train"), load("mnist5k", split="test")
    assert train.images.shape == (4000, 28, 28, 1) and test.images.shape == (1000, 28, 28, 1)
    assert train.images.dtype == np.float32 and 0 <= train.images.min() and train.images.max() <= 1
    assert np.bincount(test.labels).tolist() == [100] * 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run on the bundled digits, shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--arch", "notes", "--epochs", "1", "--val-split", "0.1", "--out", str(out)])
    assert code == 0
    return out


@pytest.mark.slow
def test_train_writes_checkpoint_and_history(trained, capsys):
    assert (trained / "checkpoint.safetensors").is_file()
    lines = (trained / "history.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch,")


def test_eval_reports_test_accuracy(trained, capsys):
    assert main(["eval", str(trained / "checkpoint.safetensors")]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("accuracy ")[1].split("%")[0])
    assert accuracy > 85.0 and "1000 images" in out


def test_predict_prints_top_k_classes(trained, tmp_path, capsys):
    from PIL import Image

    test = load("mnist5k", split="test")
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray((test.images[i, :, :, 0] * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    assert main(["predict", str(trained / "checkpoint.safetensors"), *paths, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    predicted = [int(line.split(": ")[1].split(" ")[0]) for line in lines]
    assert sum(p == y for p, y in zip(predicted, test.labels[:3])) >= 2
    assert all(line.count("%") == 2 for line in lines)


@pytest.mark.slow
def test_resume_extends_a_run(trained, capsys):
    assert main(["train", "--resume", str(trained / "checkpoint.safetensors"), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "epoch 2 " in out
    assert len((trained / "history.csv").read_text().splitlines()) == 3


def test_summary_prints_the_table(capsys):
    assert main(["summary", "lenet", "--input", "28x28x1"]) == 0
    out = capsys.readouterr().out
    assert "28x28x16" in out and "7x7x32" in out and "parameters: 215,370" in out


def test_summary_of_vgg16_with_a_budget(capsys, monkeypatch):
    # the workspace depends on the cores (each thread of a network pass has its own blocks): 2, as in CI
    monkeypatch.setattr(threads, "cores", lambda: 2)
    assert main(["summary", "vgg16", "--budget", "12GB"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 138,357,544" in out
    assert "15,237,608 values" in out  # the notes' activation count: input + every CONV/POOL/FC output
    # Winograd's workspace (with Numba) is smaller than im2col's on VGG's widest layers
    inference = 287 if winograd.ENABLED else 284
    assert "largest train batch within 12GB: 104" in out
    assert f"largest inference batch within 12GB: {inference}" in out
    assert "[fc-params]" in out


def test_summary_json_for_scripts(capsys):
    import json

    assert main(["summary", "INPUT[32x32x3] -> [CONV3-32 -> RELU]*2 -> POOL2 -> FC10", "--json",
                 "--batch", "8", "--optimizer", "adam", "--budget", "1GB"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["batch"] == 8 and document["optimizer"] == "adam"
    assert [row["output_shape"] for row in document["layers"]][-1] == [10]
    assert document["budget"]["train"]["batch"] > 8


def test_summary_notation_error_points_at_the_column(capsys):
    assert main(["summary", "INPUT[32x32x3] -> CONV3-32 -> FX10"]) == 2
    err = capsys.readouterr().err
    assert "did you mean FC" in err and "^" in err


@pytest.mark.parametrize("argv", [["train", "--epochs", "many"], ["fly"],
                                  ["summary", "lenet", "--input", "28by28"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_failures_are_one_clear_line_and_exit_1(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    assert main(["train", "--data", "mnist", "--root", str(tmp_path), "--epochs", "1"]) == 1
    assert "fetch" in capsys.readouterr().err


def test_unknown_architecture_is_a_usage_error(capsys):
    assert main(["train", "--arch", "nosuchnet", "--epochs", "1"]) == 2
    assert "neither a zoo name" in capsys.readouterr().err


@pytest.mark.slow
def test_train_accepts_the_notation(tmp_path, capsys):
    spec = "INPUT -> [CONV -> RELU -> POOL]*2 -> FC"
    assert main(["train", "--arch", spec, "--epochs", "1", "--val-split", "0", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "28x28x32" in out and "7x7x64" in out and "1x1x10" in out


def test_bad_augmentation_name_is_a_usage_error(capsys):
    assert main(["train", "--augment", "blur", "--epochs", "1"]) == 2
    assert "crop, flip, rotate, shift, jitter, cutout" in capsys.readouterr().err


def test_predict_slide_writes_a_heat_map(trained, tmp_path, capsys):
    from PIL import Image

    test = load("mnist5k", split="test")
    path = tmp_path / "digit.png"
    Image.fromarray((test.images[0, :, :, 0] * 255).astype(np.uint8)).save(path)
    heat = tmp_path / "heat.png"
    assert main(["predict", str(trained / "checkpoint.safetensors"), str(path), "--slide", "--scale", "1.5",
                 "--heatmap", str(heat), "--heat-class", "3"]) == 0
    out = capsys.readouterr().out
    assert "sliding the 28x28 net over 42x42 images: 8x8 positions averaged" in out
    with Image.open(heat) as picture:
        assert picture.size == (252, 252 + 34) and picture.mode == "RGB"  # enlarged 6x, a legend under it
    assert main(["predict", str(trained / "checkpoint.safetensors"), str(path), "--heatmap", str(heat)]) == 2
