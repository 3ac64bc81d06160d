"""The command line as people use it: one-line usage errors naming the flag, resume that means what it says,
run folders that are never silently overwritten, paths that work from any folder."""

import json
from pathlib import Path

import numpy as np
import pytest

from volnet.cli import main
from volnet.train import checkpoint as ckpt

TINY = "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC"


def usage_error(argv, capsys) -> str:
    """Run a command that must fail as a usage error; its stderr, which must be one line."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0, err
    return err


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "-1"], "argument --epochs: must be an integer >= 1, got '-1'"),
    (["train", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got '0'"),
    (["train", "--lr", "-1"], "argument --lr: must be a finite number > 0, got '-1'"),
    (["train", "--lr", "inf"], "argument --lr: must be a finite number > 0, got 'inf'"),
    (["train", "--lr", "nan"], "argument --lr: must be a finite number > 0, got 'nan'"),
    (["train", "--lr", "abc"], "argument --lr: expected a finite number > 0, got 'abc'"),
    (["train", "--val-split", "1"], "argument --val-split: must be a number in [0, 1), got '1'"),
    (["train", "--size", "28x28x1"], "argument --size: expected 2 sizes like 28x28, got '28x28x1'"),
    (["train", "--epochs", "2", "--warmup", "2"], "argument --warmup: 2 epochs of warm-up leave none"),
    (["train", "--arch", "vgg16cifar"], "argument --arch: unknown architecture 'vgg16cifar'; did you mean "
                                        "'vgg16-cifar'?"),
    (["summary", "lenet", "--input", "28x28"], "argument --input: expected 3 sizes like 28x28x1, got '28x28'"),
    (["predict", "x.safetensors", "x.png", "--top-k", "0"], "argument --top-k: must be an integer >= 1"),
    (["predict", "x.safetensors", "x.png", "--scale", "inf"], "argument --scale: must be a finite number >= 1"),
])
def test_usage_errors_are_one_line_naming_the_flag_and_exit_2(argv, message, capsys):
    err = usage_error(argv, capsys)
    assert err.startswith(f"volnet {argv[0]}: error: {message}")
    assert err.endswith(f"(see volnet {argv[0]} --help)")


def test_the_parser_offers_every_optimizer_and_architecture():
    from volnet.cli import args
    from volnet.optim import OPTIMIZERS
    from volnet.zoo import ARCHITECTURES

    assert args.OPTIMIZER_NAMES == tuple(OPTIMIZERS) and args.ARCHITECTURE_NAMES == tuple(ARCHITECTURES)


def test_a_bad_notation_is_a_usage_error_pointing_at_the_column(capsys):
    assert main(["train", "--arch", "INPUT -> CONV3-8 -> FX10"]) == 2
    first, notation, caret = capsys.readouterr().err.rstrip("\n").split("\n")
    assert first == ("volnet train: error: argument --arch: unknown layer 'FX' at column 21; did you mean FC? "
                     "(see volnet train --help)")
    assert notation.strip() == "INPUT -> CONV3-8 -> FX10" and caret.index("^") == notation.index("FX")


def test_a_zoo_net_made_for_other_images_says_so(capsys):
    err = usage_error(["train", "--arch", "vgg16-cifar", "--epochs", "1"], capsys)
    assert "vgg16-cifar expects 32x32x3 images, mnist5k images are 28x28x1; architectures made for 28x28x1:" in err
    assert "lenet" in err


@pytest.fixture
def run(tmp_path):
    """A finished two-epoch cosine run of a tiny net on the bundled digits."""
    out = tmp_path / "run"
    assert main(["train", "--arch", TINY, "--epochs", "2", "--schedule", "cosine", "--lr", "0.01",
                 "--val-split", "0", "--out", str(out)]) == 0
    return out


def history(out):
    return json.loads((out / "history.json").read_text())


@pytest.mark.slow
def test_extending_a_cosine_run_stretches_the_schedule(run, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(run / "checkpoint.safetensors"), "--epochs", "4"]) == 0
    out = capsys.readouterr().out
    assert "extending the run from 2 to 4 epochs; the cosine schedule is fitted to 4 epochs (learning rate " \
           "0.005 in epoch 3)" in out
    lrs = [row["lr"] for row in history(run)]
    assert lrs[:2] == [0.01, 0.005]  # the first two epochs as trained
    assert lrs[2:] == pytest.approx([0.005, 0.01 * (1 + np.cos(np.pi * 3 / 4)) / 2])  # not lr 0
    _, metadata = ckpt.read(run / "checkpoint.safetensors")
    assert metadata["train"]["epochs"] == 4 and metadata["schedule"]["T"] == 4


@pytest.mark.slow
def test_a_complete_run_says_so_and_trains_nothing(run, capsys):
    capsys.readouterr()
    before = (run / "checkpoint.safetensors").read_bytes()
    assert main(["train", "--resume", str(run / "checkpoint.safetensors")]) == 0
    assert "the run is complete (2 of 2 epochs), nothing to train; pass --epochs N (more than 2) to extend it" \
        in capsys.readouterr().out
    assert (run / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.slow
def test_fewer_epochs_than_done_is_a_usage_error(run, capsys):
    err = usage_error(["train", "--resume", str(run / "checkpoint.safetensors"), "--epochs", "1"], capsys)
    assert "argument --epochs: the run has already trained 2 epochs; pass more than 2 to extend it" in err


@pytest.mark.slow
def test_options_that_resume_cannot_apply_are_refused_not_ignored(run, capsys):
    err = usage_error(["train", "--resume", str(run / "checkpoint.safetensors"), "--epochs", "3", "--lr", "0.1",
                       "--schedule", "step", "--arch", "lenet"], capsys)
    assert "--arch, --lr, --schedule cannot change a resumed run" in err


@pytest.mark.slow
def test_a_fresh_run_never_overwrites_a_run_silently(run, capsys):
    before = (run / "checkpoint.safetensors").read_bytes()
    err = usage_error(["train", "--arch", TINY, "--epochs", "1", "--out", str(run)], capsys)
    assert f"{run} already holds a run; continue it with --resume {run / 'checkpoint.safetensors'}, replace it " \
           "with --overwrite" in err
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert main(["train", "--arch", TINY, "--epochs", "1", "--val-split", "0", "--out", str(run),
                 "--overwrite"]) == 0
    assert len(history(run)) == 1


def test_an_out_that_is_a_file_fails_before_reading_data(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("")
    assert main(["train", "--arch", TINY, "--epochs", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"volnet train: error: the output folder {out} is a file; choose another --out"


@pytest.mark.slow
def test_the_default_out_of_a_notation_is_one_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--arch", TINY, "--epochs", "1", "--val-split", "0"]) == 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("net-") and runs[0].name.endswith("-mnist5k")
    assert (runs[0] / "checkpoint.safetensors").is_file()
    assert f"writing to {Path('runs') / runs[0].name}" in capsys.readouterr().out


def write_folder(root: Path, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for label, name in enumerate(("dark", "light")):
            (root / split / name).mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 100, (8, 8, 3)) + 150 * label
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")


def test_a_relative_root_works_from_another_folder_and_eval_root_is_used(tmp_path, monkeypatch, capsys):
    write_folder(tmp_path / "work" / "shapes")
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> FC", "--data", "folder", "--root", "shapes",
                 "--epochs", "1", "--val-split", "0", "--out", "run"]) == 0
    _, metadata = ckpt.read(tmp_path / "work" / "run" / "checkpoint.safetensors")
    assert metadata["data"]["root"] == str(tmp_path / "work" / "shapes")
    monkeypatch.chdir(tmp_path)
    checkpoint = str(tmp_path / "work" / "run" / "checkpoint.safetensors")
    assert main(["eval", checkpoint]) == 0
    assert "12 images" in capsys.readouterr().out
    # the data moved: --root finds it, for eval and for resume, without --data
    (tmp_path / "work" / "shapes").rename(tmp_path / "moved")
    assert main(["eval", checkpoint]) == 1
    capsys.readouterr()
    assert main(["eval", checkpoint, "--root", str(tmp_path / "moved")]) == 0
    assert "12 images" in capsys.readouterr().out
    assert main(["train", "--resume", checkpoint, "--epochs", "2", "--root", "moved"]) == 0
    _, metadata = ckpt.read(checkpoint)
    assert metadata["data"]["root"] == str(tmp_path / "moved") and metadata["position"]["epoch"] == 2
