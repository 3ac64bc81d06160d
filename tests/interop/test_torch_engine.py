"""The engines: PyTorch computes the steps the NumPy engine computes, one process or several.

Proofs, on CPU and in float64 so that equal means equal to rounding:

1. ``TorchEngine`` and the NumPy engine end with the same weights, BatchNorm
   averages, optimizer caches and history from the same initial weights and
   batches, for every optimizer, with weight decay, warm-up and cosine
   schedule, augmentation, normalisation and validation (no dropout: its
   masks come from each library's generator).
2. Two DistributedDataParallel workers (gloo, started by volnet's launcher)
   on shares of a batch of 2B compute what one process computes on 2B,
   and rank 0 writes the same checkpoint.
3. A checkpoint written by either engine resumes on the other and ends equal
   to an uninterrupted run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from volnet import Sequential  # noqa: E402
from volnet.data import Augment, HorizontalFlip, Normalizer, RandomCrop  # noqa: E402
from volnet.interop.ddp import launch  # noqa: E402
from volnet.interop.torch_engine import TorchEngine, torch_optimizer  # noqa: E402
from volnet.interop.torch_setup import EngineError  # noqa: E402
from volnet.layers import FC, BatchNorm, Conv2D, Dropout, LocallyConnected, MaxPool, ReLU  # noqa: E402
from volnet.optim import OPTIMIZERS, CosineAnnealing, LinearWarmup, make_optimizer  # noqa: E402
from volnet.train import Trainer, TrainingInterrupted  # noqa: E402
from volnet.train import checkpoint as ckpt  # noqa: E402
from toy import StopAt, toy_data

SHAPE = (8, 8, 2)  # the images of every test here, two deep for the LocallyConnected layer

SRC = Path(__file__).resolve().parents[2] / "src"


def small_net(dropout=False):
    # No bias right before BatchNorm: its gradient is zero up to rounding, which Adam and Adagrad would
    # turn into steps of full size that differ between any two libraries.
    layers = [Conv2D(4, 3, P=1), ReLU(), BatchNorm(), MaxPool(2, 2), LocallyConnected(3, 2), ReLU(),
              *([Dropout(0.3)] if dropout else []), FC(6), ReLU(), FC(3)]
    return Sequential(layers, input_shape=(8, 8, 2), seed=1, dtype="float64")


def make_trainer(optimizer="adam", engine=None, out_dir=None, callbacks=(), dropout=False, epochs=3):
    train = toy_data(45, shape=SHAPE)
    net = small_net(dropout)
    kwargs = {"momentum": 0.9} if optimizer in ("momentum", "nesterov") else {}
    opt = make_optimizer(optimizer, net.params(), lr=0.02, weight_decay=1e-3, **kwargs)
    return Trainer(net, opt, train, val=toy_data(13, seed=1, shape=SHAPE), epochs=epochs, batch_size=16,
                   schedule=LinearWarmup(CosineAnnealing(0.02, T=epochs - 1), warmup=1),
                   augment=Augment([RandomCrop(pad=1), HorizontalFlip()]), normalizer=Normalizer.fit(train.images),
                   seed=7, engine=engine, out_dir=out_dir, callbacks=callbacks)


def assert_same_run(a: Trainer, b: Trainer, tol=1e-9):
    ours, theirs = ckpt.network_tensors(a.net), ckpt.network_tensors(b.net)
    for name in ours:
        np.testing.assert_allclose(theirs[name], ours[name], rtol=tol, atol=tol, err_msg=name)
    for name, arrays in a.optimizer.state().items():
        for j, (x, y) in enumerate(zip(arrays, b.optimizer.state()[name])):
            np.testing.assert_allclose(y, x, rtol=tol, atol=tol, err_msg=f"optimizer.{name}.{j}")
    assert a.optimizer.steps == b.optimizer.steps and a.optimizer.lr == b.optimizer.lr
    for x, y in zip(a.history.records, b.history.records):
        for field in ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            expected = getattr(x, field)
            assert getattr(y, field) == (None if expected is None else pytest.approx(expected, rel=tol, abs=tol))


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_torch_engine_trains_what_the_numpy_engine_trains(optimizer):
    numpy_run, torch_run = make_trainer(optimizer), make_trainer(optimizer, TorchEngine("cpu"))
    numpy_run.run()
    torch_run.run()
    assert len(torch_run.history) == 3
    assert_same_run(numpy_run, torch_run)


def test_svm_loss_is_the_notes_hinge():
    runs = []
    for engine in (None, TorchEngine("cpu")):
        net = Sequential([Conv2D(3, 3), ReLU(), FC(3)], input_shape=(8, 8, 2), seed=2, dtype="float64")
        trainer = Trainer(net, make_optimizer("sgd", net.params(), lr=0.1), toy_data(20, shape=SHAPE), epochs=2, batch_size=8,
                          loss="svm", engine=engine)
        trainer.run()
        runs.append(trainer)
    assert_same_run(*runs)


@pytest.mark.slow
@pytest.mark.parametrize("first, second", [("numpy", "torch"), ("torch", "numpy")])
def test_a_checkpoint_resumes_on_the_other_engine(tmp_path, first, second):
    engines = {"numpy": lambda: None, "torch": lambda: TorchEngine("cpu")}
    whole = make_trainer("adam")
    whole.run()
    box = []
    box.append(make_trainer("adam", engines[first](), tmp_path, callbacks=[StopAt(box, 2, 2)]))
    with pytest.raises(TrainingInterrupted):
        box[0].run()
    resumed = Trainer.from_checkpoint(tmp_path / "checkpoint.safetensors", toy_data(45, shape=SHAPE), val=toy_data(13, seed=1, shape=SHAPE),
                                      engine=engines[second]())
    assert (resumed.position.epoch, resumed.position.batch) == (1, 2)
    resumed.run()
    assert_same_run(whole, resumed)


@pytest.mark.slow
def test_torch_engine_resumes_a_run_with_dropout_exactly(tmp_path):
    """Dropout masks come from torch's generator, seeded from the volnet layers' saved generators."""
    whole = make_trainer("momentum", TorchEngine("cpu"), dropout=True)
    whole.run()
    box = []
    box.append(make_trainer("momentum", TorchEngine("cpu"), tmp_path, callbacks=[StopAt(box, 1, 2)], dropout=True))
    with pytest.raises(TrainingInterrupted):
        box[0].run()
    resumed = Trainer.from_checkpoint(tmp_path / "checkpoint.safetensors", toy_data(45, shape=SHAPE), val=toy_data(13, seed=1, shape=SHAPE),
                                      engine=TorchEngine("cpu"))
    resumed.run()
    assert_same_run(whole, resumed, tol=1e-12)


def test_optimizer_hyperparameters_reach_torch():
    net = small_net()
    for name, expected in [("nesterov", {"momentum": 0.8, "nesterov": True}), ("rmsprop", {"alpha": 0.99}),
                           ("adam", {"betas": (0.9, 0.999)}), ("adagrad", {"eps": 1e-10})]:
        kwargs = {"momentum": 0.8} if name == "nesterov" else {}
        opt = make_optimizer(name, net.params(), lr=0.5, weight_decay=0.25, **kwargs)
        params = [torch.zeros(1, requires_grad=True) for _ in net.params()]
        group = torch_optimizer(torch, params, opt).param_groups[0]
        assert group["lr"] == 0.5 and group["weight_decay"] == 0.25
        assert {key: group[key] for key in expected} == expected


def test_clear_errors():
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="sees no CUDA GPU; use --device cpu"):
            TorchEngine("cuda")
    with pytest.raises(EngineError, match="SyncBatchNorm runs on CUDA only"):
        TorchEngine("cpu", sync_bn=True)


WORKER = """
import os, signal, sys
sys.path[:0] = [{tests!r}, os.path.dirname({tests!r})]  # this folder, and tests/ for the toy data
from test_torch_engine import make_ddp_trainer
from volnet.interop.torch_engine import TorchEngine
from volnet.train import Callback, TrainingInterrupted

class SignalOnce(Callback):  # SIGTERM to worker 1 alone, as a scheduler might send it
    def on_batch(self, progress):
        if engine.rank == 1 and (progress.epoch, progress.batch) == {stop_at!r}:
            os.kill(os.getpid(), signal.SIGTERM)

engine = TorchEngine("cpu", distributed=True)
trainer = make_ddp_trainer(engine, {out!r})
trainer.callbacks.append(SignalOnce())
try:
    trainer.run()
except TrainingInterrupted as stop:  # what volnet train does
    sys.exit(128 + stop.signal)
finally:
    engine.close()
"""


def make_ddp_trainer(engine=None, out_dir=None, batch_size=8):
    net = Sequential([Conv2D(4, 3, P=1), ReLU(), MaxPool(2, 2), FC(6), ReLU(), FC(3)], input_shape=(8, 8, 2), seed=1,
                     dtype="float64")
    opt = make_optimizer("momentum", net.params(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    train = toy_data(45, shape=SHAPE)  # 6 batches of 8 per epoch, the last of 5 images: shares of 3 and 2
    return Trainer(net, opt, train, val=toy_data(13, seed=1, shape=SHAPE), epochs=2, batch_size=batch_size,
                   augment=Augment([RandomCrop(pad=1), HorizontalFlip()]), normalizer=Normalizer.fit(train.images),
                   seed=7, engine=engine, out_dir=out_dir)


@pytest.mark.slow
def test_two_workers_on_batch_shares_equal_one_process_on_the_whole_batch(tmp_path, monkeypatch):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), out=str(tmp_path / "run"), stop_at=None))
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    assert launch([], 2, program=(str(script),)).code == 0
    one = make_ddp_trainer()  # the NumPy engine, one process, batches of 8
    one.run()
    tensors, metadata = ckpt.read(tmp_path / "run" / "checkpoint.safetensors")
    run = ckpt.unpack_run(tensors, metadata)
    assert run.position.epoch == 2 and run.optimizer.steps == one.optimizer.steps == 12
    for name, value in ckpt.network_tensors(one.net).items():
        np.testing.assert_allclose(tensors[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
    for x, y in zip(one.optimizer.state()["velocity"], run.optimizer.state()["velocity"]):
        np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-12)
    for x, y in zip(one.history.records, run.history.records):  # the loss and accuracy of the whole batch
        assert (y.train_loss, y.train_accuracy, y.val_loss) == pytest.approx((x.train_loss, x.train_accuracy,
                                                                              x.val_loss), rel=1e-9)


@pytest.mark.slow
def test_sigterm_on_one_worker_stops_all_and_the_run_resumes_exactly(tmp_path, monkeypatch):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), out=str(tmp_path / "run"), stop_at=(1, 3)))
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    stopped = launch([], 2, program=(str(script),))
    assert (stopped.code, stopped.kept) == (143, None)  # 128 + SIGTERM; no folder of worker output kept
    tensors, metadata = ckpt.read(tmp_path / "run" / "checkpoint.safetensors")
    assert (metadata["position"]["epoch"], metadata["position"]["batch"]) == (0, 3)  # saved once, at that step
    resumed = Trainer.from_checkpoint(tmp_path / "run" / "checkpoint.safetensors", toy_data(45, shape=SHAPE),
                                      val=toy_data(13, seed=1, shape=SHAPE))  # on the NumPy engine, in this process
    resumed.run()
    whole = make_ddp_trainer()
    whole.run()
    assert_same_run(whole, resumed)


def volnet_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "volnet", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_cli_nproc_2_writes_a_checkpoint_that_resumes_on_numpy(tmp_path):
    arch = "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC"
    common = ("train", "--arch", arch, "--data", "mnist5k", "--epochs", "1", "--batch-size", "64",
              "--optimizer", "momentum")
    two = volnet_cli(*common, "--engine", "torch", "--device", "cpu", "--nproc", "2", "--out", "two", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert "2 DistributedDataParallel workers (gloo)" in two.stdout and two.stdout.count("epoch 1 ") == 1
    one = volnet_cli(*common, "--out", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    a, _ = ckpt.read(tmp_path / "one" / "checkpoint.safetensors")
    b, _ = ckpt.read(tmp_path / "two" / "checkpoint.safetensors")
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5, err_msg=name)  # float32
    resumed = volnet_cli("train", "--resume", "two/checkpoint.safetensors", "--epochs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    evaluated = volnet_cli("eval", "two/checkpoint.safetensors", cwd=tmp_path)
    assert evaluated.returncode == 0 and "(epoch 2)" in evaluated.stdout


def test_cli_usage_errors(tmp_path, capsys):
    from volnet.cli import main

    assert main(["train", "--nproc", "2", "--out", str(tmp_path / "a")]) == 2
    assert "--nproc apply to --engine torch only" in capsys.readouterr().err
    assert main(["train", "--engine", "torch", "--device", "cpu", "--sync-bn", "--out", str(tmp_path / "b")]) == 2
    assert "SyncBatchNorm runs on CUDA only" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--engine", "torch", "--device", "cuda", "--out", str(tmp_path / "c")]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err


def test_missing_torch_gives_the_install_line(tmp_path, monkeypatch, capsys):
    from volnet.cli import main

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    assert main(["train", "--engine", "torch", "--out", str(tmp_path / "a")]) == 1
    assert "--index-url https://download.pytorch.org/whl/cpu" in capsys.readouterr().err


def test_docstring_example():
    import doctest

    from volnet.interop import torch_engine

    assert doctest.testmod(torch_engine).failed == 0


def test_importing_the_engines_does_not_import_torch():
    code = "import sys, volnet.train.engines, volnet.interop.torch_engine; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(SRC)})


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without a CUDA GPU")
def test_gpu_benchmark_says_when_there_is_no_gpu():
    script = SRC.parent / "benchmarks" / "bench_gpu.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 1 and "no CUDA GPU" in done.stderr
