"""Never lose or fake work: divergence, signals, kills during saves, two runs on one folder.

Faults are injected for real where the issue asks for it: signals sent to a
training process, ``kill -9`` in the middle of a save, a second process
holding the run folder.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from volnet import Sequential
from volnet.layers import FC, Conv2D, ReLU
from volnet.optim import make_optimizer
from volnet.train import Callback, RunExists, RunFolder, RunFolderBusy, RunFolderError, Trainer, TrainingDiverged
from volnet.train import checkpoint as ckpt

from toy import toy_data

from .test_trainer import make_trainer

# A training process for fault injection: a toy run into sys.argv[1]; the test appends what it injects.
SCRIPT_HEAD = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from volnet.train import Callback, TrainingInterrupted
    from volnet import files
    from volnet.train import checkpoint as ckpt
    from train.test_trainer import make_trainer
    out = sys.argv[1]
""")


# Ctrl-C pressed `times` times after a step, then what the run says it kept.
CTRL_C_AT = """
class CtrlC(Callback):
    def on_batch(self, progress):
        if (progress.epoch, progress.batch) == ({epoch}, {batch}):
            for _ in range({times}):
                os.kill(os.getpid(), signal.SIGINT)
trainer = make_trainer(out, callbacks=[CtrlC()])
try:
    trainer.run()
except TrainingInterrupted as stop:
    print(stop.saved, stop.epoch, stop.batch, stop)
"""


def run_script(tmp_path, body, *args):
    script = SCRIPT_HEAD.format(tests=os.path.dirname(os.path.dirname(__file__))) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script, str(tmp_path), *args], capture_output=True, text=True,
                          timeout=120)


def saved_position(path):
    _, metadata = ckpt.read(path)
    return metadata["position"]["epoch"], metadata["position"]["batch"]


# -- divergence ---------------------------------------------------------------------

def small_net_trainer(out_dir, optimizer="sgd", lr=0.05, epochs=2):
    data = toy_data()
    net = Sequential([Conv2D(4, 3, P=1), ReLU(), FC(3)], input_shape=(8, 8, 1), seed=1)
    return Trainer(net, make_optimizer(optimizer, net.params(), lr=lr), data, epochs=epochs, batch_size=16,
                   seed=3, out_dir=out_dir)


def test_an_update_that_overflows_on_the_last_step_is_never_saved(tmp_path):
    trainer = small_net_trainer(tmp_path, epochs=3)
    trainer.run()
    good = (tmp_path / "checkpoint.safetensors").read_bytes()
    trainer.extend(4)

    class PoisonLastStep(Callback):  # the epoch's last update sends a weight to Inf
        def on_batch(self, progress):
            if progress.batch == progress.batches:
                trainer.net.layers[0].params()[0].value[0, 0, 0, 0] = np.inf

    trainer.callbacks.append(PoisonLastStep())
    with pytest.raises(TrainingDiverged, match=r"NaN/Inf at the end of epoch 4.*the last good checkpoint is .*checkpoint"
                                               r"\.safetensors \(3 epochs done\)"):
        trainer.run()
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == good


def test_non_finite_optimizer_state_is_not_saved(tmp_path):
    trainer = small_net_trainer(tmp_path, optimizer="adam", epochs=1)
    trainer.run()
    trainer.optimizer.state()["v"][0][0] = np.nan  # the live state array
    with pytest.raises(TrainingDiverged, match=r"optimizer\.v\.0 became NaN/Inf.*not saved"):
        trainer.save()


def test_a_loss_that_explodes_without_reaching_nan_stops_the_run(tmp_path):
    trainer = small_net_trainer(tmp_path, optimizer="adam", lr=1e6, epochs=3)
    with pytest.raises(TrainingDiverged, match=r"exploded to .* at epoch 1, batch \d+, over 1000x the 1.1 of "
                                               r"guessing at chance.*no checkpoint was written"):
        trainer.run()
    assert not (tmp_path / "checkpoint.safetensors").exists()


def test_divergence_in_the_first_epoch_names_no_checkpoint(tmp_path):
    data = toy_data()
    data.images[5, 2, 2, 0] = np.nan
    trainer = make_trainer(tmp_path, data=data)
    trainer.normalizer = None
    with pytest.raises(TrainingDiverged) as info:
        trainer.run()
    assert "no checkpoint was written" in str(info.value) and "last good" not in str(info.value)


# -- signals ------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_saves_like_ctrl_c_and_exits_143_from_the_command_line(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "volnet", "train", "--arch", "notes", "--epochs", "40",
                                "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for line in process.stdout:  # the first epoch's line: a checkpoint exists and training goes on
        if line.startswith("epoch 1 "):
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "interrupted by SIGTERM: progress saved to" in err and "resume with: volnet train --resume" in err
    epoch, batch = saved_position(tmp_path / "run" / "checkpoint.safetensors")
    assert (epoch, batch) != (1, 0) or "1 epochs done" in err  # a position after the first epoch was saved
    assert f"{epoch} epochs done" in err


@pytest.mark.slow
def test_second_ctrl_c_during_the_save_lets_the_save_complete(tmp_path):
    result = run_script(tmp_path, textwrap.dedent("""
        real_write = ckpt.atomic_write_bytes
        def write_with_a_second_ctrl_c(path, data):
            os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C arrives mid-save
            return real_write(path, data)
        ckpt.atomic_write_bytes = write_with_a_second_ctrl_c
    """) + CTRL_C_AT.format(epoch=1, batch=3, times=1))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True 0 3 SIGINT: progress saved to")
    assert saved_position(tmp_path / "checkpoint.safetensors") == (0, 3)


@pytest.mark.slow
def test_second_ctrl_c_during_a_step_stops_at_once_and_says_nothing_new_was_saved(tmp_path):
    result = run_script(tmp_path, CTRL_C_AT.format(epoch=2, batch=2, times=2))  # the second before the step ends
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("False 1 0 SIGINT twice: stopped during a step, which was not saved; "
                                    "the newest checkpoint is")
    assert saved_position(tmp_path / "checkpoint.safetensors") == (1, 0)


@pytest.mark.slow
def test_kill_9_during_saves_leaves_temp_files_that_the_next_run_removes_and_history_follows_the_checkpoint(
        tmp_path):
    # epoch 2's checkpoint is written, then the process dies before the history files follow it
    result = run_script(tmp_path, """
        from volnet.train import trainer as module
        real_save = module.History.save
        def die_in_epoch_2(self, path):
            if len(self.records) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(self, path)
        module.History.save = die_in_epoch_2
        make_trainer(out, epochs=3).run()
    """)
    assert result.returncode == -signal.SIGKILL
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1  # an epoch behind the checkpoint
    assert saved_position(tmp_path / "checkpoint.safetensors") == (2, 0)
    # and a second process dies inside the checkpoint's write, leaving its temporary file
    result = run_script(tmp_path, """
        def die(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        files.os.replace = die
        trainer = make_trainer(out, epochs=3)
        trainer.save(out + "/checkpoint.safetensors")
    """)
    assert result.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".checkpoint.safetensors.*.tmp"))) == 1

    class Check(Callback):
        def on_epoch_start(self, epoch, epochs, batches):
            self.history = json.loads((tmp_path / "history.json").read_text())
            self.temp_files = list(tmp_path.glob(".*.tmp"))

    check = Check()
    resumed = Trainer.from_checkpoint(tmp_path / "checkpoint.safetensors", toy_data(), val=toy_data(32, seed=1),
                                      callbacks=[check])
    resumed.run()
    assert [row["epoch"] for row in check.history] == [1, 2] and check.temp_files == []
    assert [row["epoch"] for row in json.loads((tmp_path / "history.json").read_text())] == [1, 2, 3]


# -- the run folder -----------------------------------------------------------------

def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from volnet.train import RunFolder
        folder = RunFolder({str(tmp_path)!r})
        folder.prepare()
        with folder.lock():
            print("held", flush=True)
            time.sleep(60)
    """), "--holder-marker"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=rf"in use by another training run \(pid {holder.pid}, started .*"
                                                r"--holder-marker\); wait for it to finish, or choose another --out"):
            make_trainer(tmp_path, epochs=1).run()
        assert not (tmp_path / "checkpoint.safetensors").exists()
    finally:
        holder.kill()  # kill -9 leaves no stale lock: the kernel drops a flock with its process
        holder.wait()
    make_trainer(tmp_path, epochs=1).run()
    assert saved_position(tmp_path / "checkpoint.safetensors") == (1, 0)


def test_a_fresh_run_does_not_overwrite_a_run_unless_asked(tmp_path):
    make_trainer(tmp_path, epochs=1).run()
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    with pytest.raises(RunExists, match="already holds a run.*--resume.*--overwrite"):
        make_trainer(tmp_path, epochs=2).run()
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before
    replacing = make_trainer(tmp_path, epochs=2)
    replacing.overwrite = True
    replacing.run()
    assert saved_position(tmp_path / "checkpoint.safetensors") == (2, 0)


def test_an_output_folder_that_is_a_file_is_found_before_training(tmp_path):
    out = tmp_path / "out"
    out.write_text("")
    steps = []
    trainer = make_trainer(out, epochs=1, callbacks=[type("C", (Callback,), {
        "on_batch": lambda self, progress: steps.append(progress)})()])
    with pytest.raises(RunFolderError, match="is a file; choose another --out"):
        trainer.run()
    assert steps == []


def test_an_unwritable_output_folder_is_found_before_training(tmp_path, monkeypatch):
    # os.access, not chmod: the tests run as root in CI, and root may write anywhere
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(RunFolderError, match="not writable; choose another --out"):
        RunFolder(tmp_path / "run").prepare()


def test_missing_safetensors_is_found_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    steps = []
    trainer = make_trainer(tmp_path, epochs=1, callbacks=[type("C", (Callback,), {
        "on_batch": lambda self, progress: steps.append(progress)})()])
    with pytest.raises(ckpt.CheckpointError, match="pip install"):
        trainer.run()
    assert steps == []
