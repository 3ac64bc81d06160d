"""Errors for people at the command line (issue 21 item 12): flags rather than Python keywords, one line, the
file a failed write meant rather than its hidden temporary, plurals."""

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from volnet.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def one_line(capsys, code, expected_code=1):
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_folder_without_root_names_the_flag_and_the_layout(tmp_path, capsys):
    err = one_line(capsys, main(["train", "--data", "folder", "--out", str(tmp_path / "run")]))
    assert "needs --root FOLDER" in err and "FOLDER/train/<class>/*.png and FOLDER/test/<class>/*.png" in err


def test_root_with_the_bundled_digits_suggests_data_folder(tmp_path, capsys):
    err = one_line(capsys, main(["train", "--root", str(tmp_path), "--out", str(tmp_path / "run")]))
    assert "takes no --root" in err and "--data folder --root FOLDER" in err


def test_missing_mnist_files_are_one_line(tmp_path, capsys):
    err = one_line(capsys, main(["train", "--data", "mnist", "--root", str(tmp_path), "--out", str(tmp_path / "run")]))
    assert "data files not found" in err and "volnet fetch mnist" in err


def test_a_val_split_that_holds_out_nothing_names_the_flag(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(tmp_path / "pics" / name / f"{i}.png")
    err = one_line(capsys, main(["train", "--data", "folder", "--root", str(tmp_path / "pics"), "--val-split", "0.1",
                                 "--out", str(tmp_path / "run")]))
    assert "--val-split 0.1 (val_split) holds out no image" in err and "the largest class has 3" in err


def test_summary_of_a_notation_longer_than_a_file_name(capsys):
    notation = "INPUT[8x8x1] -> " + " -> ".join(["CONV1-4 -> RELU"] * 20) + " -> FC3"  # no "/": one file name
    assert len(notation.encode()) > 255
    assert main(["summary", notation]) == 0
    assert "20  CONV" not in capsys.readouterr().err


def test_a_channels_first_input_says_volnet_is_depth_last(capsys):
    err = one_line(capsys, main(["summary", "lenet", "--input", "1x28x28"]))
    assert "H x W x D" in err and "--input 28x28x1" in err


def test_a_failed_checkpoint_write_names_the_file_and_what_is_intact(tmp_path):
    """A disk that fills (here: the file-size limit, `ulimit -f`) while the first checkpoint is written."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "pics" / name / f"{i}.png")

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60 * 1024, 60 * 1024))

    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-m", "volnet", "train", "--data", "folder", "--root", "pics", "--arch",
                             "INPUT -> CONV3-64 -> FC", "--epochs", "1", "--val-split", "0", "--out", "run"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, preexec_fn=small_files)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("volnet train: error: could not write run/checkpoint.safetensors: ")
    assert "nothing was written to run/checkpoint.safetensors" in result.stderr and ".tmp" not in result.stderr
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_a_failed_rewrite_says_the_previous_file_is_intact(tmp_path, monkeypatch):
    from volnet.train.checkpoint import atomic_write_bytes

    path = atomic_write_bytes(tmp_path / "report.html", b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(path, b"new")
    assert str(info.value) == f"could not write {path}: No space left on device; the previous report.html is intact"
    assert info.value.errno == errno.ENOSPC and path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_plurals(tmp_path, capsys):
    from volnet.viz.report import _training

    history = [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "lr": 0.1}]
    assert "<p>1 epoch; last" in _training(history)
    out = tmp_path / "run"
    assert main(["train", "--arch", "INPUT -> FC", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out / "checkpoint.safetensors")]) == 0
    assert "the run is complete (1 of 1 epoch)" in capsys.readouterr().out
