"""Two DistributedDataParallel workers with class weights, frozen first layers, a kept best epoch and early
stopping compute what one NumPy process computes on the whole batch (the weighted mean's denominator is the
whole batch's weight sum, not a worker's share)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from volnet import Sequential  # noqa: E402
from volnet.data import Dataset  # noqa: E402
from volnet.interop.ddp import launch  # noqa: E402
from volnet.layers import FC, BatchNorm, Conv2D, MaxPool, ReLU  # noqa: E402
from volnet.optim import make_optimizer  # noqa: E402
from volnet.train import Trainer  # noqa: E402
from volnet.train import checkpoint as ckpt  # noqa: E402
from volnet.train.finetune import freeze  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"

WORKER = """
import sys
sys.path.insert(0, {tests!r})
from test_ddp_fine_tuning import make_trainer
from volnet.interop.torch_engine import TorchEngine

engine = TorchEngine("cpu", distributed=True)
try:
    make_trainer(engine, {out!r}).run()
finally:
    engine.close()
"""


def data(n, seed):
    rng = np.random.default_rng(seed)
    labels = np.minimum(rng.integers(0, 5, n), 2)  # unbalanced: class 2 three times as frequent
    images = rng.random((n, 8, 8, 2)) * 0.3
    images[labels == 0, :4] += 0.7
    images[labels == 1, 4:] += 0.7
    return Dataset(images, labels, ("top", "bottom", "none"))


def make_trainer(engine=None, out_dir=None):
    net = Sequential([Conv2D(4, 3, P=1, bias=False), BatchNorm(), ReLU(), MaxPool(2, 2), FC(6), ReLU(), FC(3)],
                     input_shape=(8, 8, 2), seed=1, dtype="float64")
    freeze(net, "1-2")
    optimizer = make_optimizer("momentum", net.trainable_params(), lr=0.05, momentum=0.9)
    return Trainer(net, optimizer, data(45, 0), val=data(13, 1), epochs=4, batch_size=8, seed=7, engine=engine,
                   out_dir=out_dir, class_weight=[1.0, 2.0, 0.5], keep_best="val_loss", early_stop=2)


@pytest.mark.slow
def test_two_workers_equal_one_process(tmp_path, monkeypatch):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), out=str(tmp_path / "run")))
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    assert launch([], 2, program=(str(script),)).code == 0
    one = make_trainer(out_dir=tmp_path / "one")
    one.run()
    for name in ("checkpoint.safetensors", "best.safetensors"):
        theirs, meta_theirs = ckpt.read(tmp_path / "run" / name)
        ours, meta_ours = ckpt.read(tmp_path / "one" / name)
        assert meta_theirs["best"]["epoch"] == meta_ours["best"]["epoch"]
        assert meta_theirs["best"]["stopped"] == meta_ours["best"]["stopped"]
        assert meta_theirs["train"]["frozen"] == [1, 2]
        for key, value in ours.items():
            if key.startswith("layers."):
                np.testing.assert_allclose(theirs[key], value, rtol=1e-9, atol=1e-12, err_msg=f"{name} {key}")
        for x, y in zip(meta_ours["history"], meta_theirs["history"]):
            assert (y["train_loss"], y["val_loss"]) == pytest.approx((x["train_loss"], x["val_loss"]), rel=1e-9)
