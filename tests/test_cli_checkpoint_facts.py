"""What the command line says about a checkpoint (issue 21 item 14): summary's memory figures in bytes that add up,
the optimizer a checkpoint was trained with, what a resume may change, and a complete run's checkpoint validated."""

import json

import numpy as np
import pytest
import safetensors.numpy

from volnet.cli import main

TERMS = ("activations", "workspace", "params", "grads", "optimizer", "buffers", "data")


@pytest.fixture(scope="module")
def adam_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adam") / "run"
    assert main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC", "--epochs", "1", "--batch-size", "256",
                 "--optimizer", "adam", "--out", str(out)]) == 0
    return out / "checkpoint.safetensors"


def test_summary_json_memory_terms_are_bytes_that_add_up(capsys):
    assert main(["summary", "lenet", "--json", "--optimizer", "adam"]) == 0
    train = json.loads(capsys.readouterr().out)["memory"]["train"]
    assert all(isinstance(train[term], int) for term in TERMS)
    assert sum(train[term] for term in TERMS) == train["total"]
    assert train["optimizer"] == 2 * train["params"] and train["optimizer_name"] == "adam"


def test_summary_of_a_checkpoint_counts_its_own_optimizer(adam_run, capsys):
    assert main(["summary", str(adam_run), "--json"]) == 0
    train = json.loads(capsys.readouterr().out)["memory"]["train"]
    assert train["optimizer_name"] == "adam" and train["optimizer"] == 2 * train["params"]
    assert main(["summary", str(adam_run), "--json", "--optimizer", "sgd"]) == 0  # asked for: as asked
    assert json.loads(capsys.readouterr().out)["memory"]["train"]["optimizer"] == 0


def test_the_report_counts_the_checkpoints_optimizer(adam_run):
    from volnet.viz.report import build_report

    text = build_report(adam_run, samples=1, test_limit=20)
    assert "(batch 1, adam)" in text and "momentum)" not in text


def test_resume_names_every_option_it_takes(adam_run, capsys):
    assert main(["train", "--resume", str(adam_run), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    for flag in ("--epochs", "--root", "--engine", "--device", "--nproc", "--report", "--stream"):
        assert flag in err.split("only ", 1)[1], err


def test_resuming_a_complete_run_validates_its_tensors(adam_run, tmp_path, capsys):
    from safetensors import safe_open

    tensors = safetensors.numpy.load_file(str(adam_run))
    with safe_open(str(adam_run), "np") as f:
        metadata = f.metadata()
    name = next(k for k in tensors if k.startswith("layers.") and k.endswith("weight"))
    tensors[name] = np.zeros((1, 2, 3, 4), tensors[name].dtype)
    broken = tmp_path / "checkpoint.safetensors"
    safetensors.numpy.save_file(tensors, str(broken), metadata=metadata)
    code = main(["train", "--resume", str(broken)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and name in err and str(broken) in err


def test_summary_of_a_checkpoint_counts_its_frozen_layers(tmp_path, capsys):
    """A run trained with --freeze: no optimizer state for the frozen layers (issue 25), as the run holds them."""
    out = tmp_path / "frozen"
    assert main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC", "--epochs", "1", "--batch-size", "512",
                 "--optimizer", "adam", "--freeze", "1", "--val-split", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["summary", str(out / "checkpoint.safetensors"), "--json"]) == 0
    train = json.loads(capsys.readouterr().out)["memory"]["train"]
    conv = 3 * 3 * 1 * 4 + 4
    assert train["optimizer"] == 2 * (train["params"] - 4 * conv)  # Adam's two caches, none for the CONV
