"""volnet's DDP launcher (``volnet train --engine torch --nproc N``) as a user meets it when things go wrong.

Fault injection on real workers (gloo on CPU, a tiny net on the bundled digits): the launcher killed
with SIGKILL, before the workers connect and while they train; a worker killed; a data error; a run
folder locked by another run. Workers die with their launcher and write nothing after it; every
failure is one line, printed once, by the launcher, and no temporary folders are left. Worker counts
the machine cannot hold are refused before any worker starts.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from volnet.cli import main  # noqa: E402
from volnet.interop import ddp  # noqa: E402
from volnet.interop.ddp import check_workers  # noqa: E402
from volnet.interop.torch_setup import EngineError  # noqa: E402
from volnet.train.run_folder import RunFolder  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
ARCH = "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC"
MiB = 2**20
linux_proc = pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                                reason="finds the workers through /proc/PID/task/*/children (Linux)")


# -- how many workers the machine holds --------------------------------------------------------------

@pytest.fixture
def machine(monkeypatch):
    """A machine of 4 cores and 64 GiB usable, where a process is 300 MiB."""
    def make(cores=4, usable=64 * 1024 * MiB, resident=300 * MiB):
        monkeypatch.setattr(ddp, "usable_cores", lambda: cores)
        monkeypatch.setattr(ddp, "usable_memory", lambda: usable)
        monkeypatch.setattr(ddp, "resident_memory", lambda: resident)
    return make


def test_more_workers_than_cores_are_refused_naming_both_figures(machine):
    machine()
    check_workers(4, "cpu", 100 * MiB)
    with pytest.raises(EngineError) as info:
        check_workers(1000, "cpu", 100 * MiB)
    message = str(info.value)
    assert "\n" not in message and message.startswith("--nproc 1000: this machine holds at most 4 workers")
    assert "4 cores" in message and "64.0 GiB" in message and "400.0 MiB" in message
    assert message.endswith("use --nproc 4 or fewer")


def test_workers_that_memory_cannot_hold_are_refused(machine):
    machine(cores=64, usable=1024 * MiB)  # 1 GiB, 300 MiB of process + 100 MiB of training step per worker
    check_workers(2, "cpu", 100 * MiB)
    with pytest.raises(EngineError) as info:
        check_workers(3, "cpu", 100 * MiB)
    message = str(info.value)
    assert "at most 2 workers" in message and "64 cores" in message and "1.0 GiB" in message
    assert "400.0 MiB" in message
    assert "300.0 MiB (314.6 MB) for the process and 100.0 MiB (104.9 MB) for its training step" in message
    machine(cores=64, usable=100 * MiB)
    with pytest.raises(EngineError, match="at most 1 worker: .*use --nproc 1 or fewer"):
        check_workers(2, "cpu")


def test_cli_refuses_nproc_1000_before_starting_any_worker(tmp_path, capsys, monkeypatch):
    def started(*args):
        raise AssertionError("workers were started")

    monkeypatch.setattr(ddp, "launch", started)
    assert main(["train", "--arch", "lenet", "--engine", "torch", "--device", "cpu", "--nproc", "1000",
                 "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--nproc 1000: this machine holds at most" in error
    assert "cores" in error and "of usable memory, where each worker needs about" in error
    assert not (tmp_path / "run").exists()


# -- fault injection on real workers -----------------------------------------------------------------

def start(tmp_path, *args):
    """``volnet train --engine torch --nproc 2`` on the bundled digits; its temporary folder is tmp_path/tmp."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmp_path / "tmp"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "volnet", "train", "--arch", ARCH, "--batch-size", "64", "--engine", "torch",
               "--device", "cpu", "--nproc", "2", *args]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_line(process, text, timeout=60):
    """Read the process's standard output until a line holds ``text`` (False if it ends or times out first)."""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)],
                     daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            return False
        if line is None:
            return False
        if text in line:
            return True
    return False


def children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def alive(pids):
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.append(pid)
    return living


def wait_until_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def snapshot(folder):
    return {path.name: (path.stat().st_mtime_ns, path.stat().st_size) for path in folder.iterdir()}


def kill_launcher_and_check_workers(launcher, workers, out):
    try:
        launcher.kill()
        launcher.wait(timeout=30)
        left = wait_until_gone(workers, timeout=5)
        assert not left, f"workers {left} outlived their launcher"
        before = snapshot(out) if out.exists() else {}
        time.sleep(1.5)  # an orphaned worker writes a checkpoint every epoch, 0.5 s each
        assert (snapshot(out) if out.exists() else {}) == before
        if out.exists():
            with RunFolder(out).lock():  # the folder is free: no orphan holds it
                pass
    finally:
        for pid in alive(workers):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@linux_proc
def test_workers_die_with_a_sigkilled_launcher_and_write_nothing_after(tmp_path):
    launcher = start(tmp_path, "--epochs", "50", "--out", "run")
    assert wait_for_line(launcher, "epoch 1 "), launcher.stderr.read()
    workers = children(launcher.pid)
    assert len(workers) == 2
    kill_launcher_and_check_workers(launcher, workers, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()  # the last complete save


@pytest.mark.slow
@linux_proc
def test_workers_waiting_to_connect_die_with_a_sigkilled_launcher(tmp_path):
    launcher = start(tmp_path, "--epochs", "50", "--out", "run")
    deadline = time.monotonic() + 60
    while len(children(launcher.pid)) < 2 and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.02)
    workers = children(launcher.pid)
    assert len(workers) == 2
    kill_launcher_and_check_workers(launcher, workers, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def assert_one_line(done, *expected):
    assert "Traceback" not in done.stderr and "torch/distributed" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for text in expected:
        assert text in done.stderr


def launch_folders(tmp_path):
    """The launch's temporary folders left in TMPDIR (PyTorch's inductor cache, torchinductor_USER, may stay)."""
    return [path.name for path in (tmp_path / "tmp").iterdir()
            if path.name.startswith(("torchelastic_", "volnet-workers-"))]


def finish(process):
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_a_data_error_is_printed_once_and_no_temporary_folder_is_left(tmp_path):
    (tmp_path / "empty").mkdir()
    done = finish(start(tmp_path, "--data", "folder", "--root", "empty", "--out", "run"))
    assert done.returncode == 1
    assert_one_line(done, "volnet train: error: ", "has no class sub-folders")
    assert launch_folders(tmp_path) == []


@pytest.mark.slow
def test_a_locked_run_folder_is_one_line_from_the_launcher(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.prepare()
    with folder.lock():
        done = finish(start(tmp_path, "--epochs", "1", "--out", "run"))
    assert done.returncode == 1
    assert_one_line(done, "volnet train: error: ", "is in use by another training run")
    assert launch_folders(tmp_path) == []


@pytest.mark.slow
@linux_proc
def test_a_killed_worker_is_one_line_from_the_launcher(tmp_path):
    launcher = start(tmp_path, "--epochs", "50", "--out", "run")
    try:
        assert wait_for_line(launcher, "epoch 1 "), launcher.stderr.read()
        workers = sorted(children(launcher.pid))
        os.kill(workers[-1], signal.SIGKILL)
        done = finish(launcher)
    finally:
        for pid in alive(children(launcher.pid) if launcher.poll() is None else []):
            os.kill(pid, signal.SIGKILL)
    assert done.returncode == 128 + signal.SIGKILL
    assert_one_line(done, "volnet train: error: worker ", "was killed by SIGKILL; the other workers were stopped")
    assert launch_folders(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_on_the_launcher_says_where_to_resume_once_without_pytorchs_log(tmp_path):
    launcher = start(tmp_path, "--epochs", "50", "--out", "run")
    try:
        assert wait_for_line(launcher, "epoch 1 "), launcher.stderr.read()
        launcher.send_signal(signal.SIGINT)
        done = finish(launcher)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert done.returncode == 130
    assert "torch/distributed" not in done.stderr and "death signal" not in done.stderr, done.stderr
    assert done.stderr.count("interrupted by SIGINT") == 1 and done.stderr.count("resume with: ") == 1
    assert launch_folders(tmp_path) == []


def test_the_failure_line_names_the_cause_not_its_consequences(tmp_path):
    """What the launcher says, from the workers' exit codes and standard error (PyTorch's ProcessFailure)."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from volnet.interop.ddp import _failure

    def failures(**codes):
        return {int(rank[1:]): ProcessFailure(int(rank[1:]), 100 + int(rank[1:]), code, str(tmp_path / "none"))
                for rank, code in codes.items()}

    lost = "Traceback (most recent call last):\n  ...\nRuntimeError: Connection closed by peer\n"
    own = "volnet train: error: data/train has no class sub-folders\n"
    for rank, text in ((0, lost), (1, own), (2, own)):
        (tmp_path / f"{rank}.err").write_text(text)
    said = _failure(failures(r0=1, r1=1, r2=1), tmp_path, 3)
    assert (said.code, said.output, said.error, said.kept) == (1, own, None, None)  # rank 1's line, once

    (tmp_path / "1.err").write_text("")
    (tmp_path / "2.err").write_text("")
    killed = _failure(failures(r0=-signal.SIGTERM, r1=-signal.SIGKILL, r2=1), tmp_path, 3)
    assert (killed.code, killed.output, killed.kept) == (137, "", None)
    assert killed.error == "worker 1 of 3 (pid 101) was killed by SIGKILL; the other workers were stopped"

    (tmp_path / "0.err").write_text("")
    quiet = _failure(failures(r0=143, r1=143, r2=143), tmp_path, 3)  # stopped by SIGTERM, saying nothing
    assert (quiet.code, quiet.output, quiet.kept) == (143, "", None)
    assert quiet.error.startswith("worker ") and quiet.error.endswith(" of 3 exited with code 143")

    (tmp_path / "0.err").write_text(lost)
    crashed = _failure(failures(r0=1), tmp_path, 3)  # only a traceback: its last line, and the outputs kept
    assert crashed.code == 1 and crashed.kept == tmp_path
    assert crashed.error == f"worker 0 of 3 failed: RuntimeError: Connection closed by peer (every worker's " \
                            f"output is kept in {tmp_path})"
