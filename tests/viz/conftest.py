"""Shared by the viz tests: a small trained-looking checkpoint on the bundled digits, and Chromium.

* ``digits_checkpoint``  a session-wide checkpoint of a small CONV net for 28x28x1 digits
  (``data.name = "mnist5k"``, so the report finds the test split), trained one short epoch so
  that its pictures are not noise (two epochs of history for the curves).
* ``small_net(dtype)``   ``INPUT[10x10x2] -> CONV3-4 -> BN -> RELU -> CONV3-5 -> RELU -> POOL2 -> FC3``.
"""

from __future__ import annotations

import numpy as np
import pytest

from volnet.spec import build


def _small_net(dtype=np.float64, seed=0):
    net = build("INPUT[10x10x2] -> CONV3-4 -> BN -> RELU -> CONV3-5 -> RELU -> POOL2 -> FC3", seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    bn = net.layers[1]  # running statistics that are not the identity, so inference mode matters
    bn.running_mean[...] = rng.standard_normal(4)
    bn.running_var[...] = rng.uniform(0.5, 2.0, 4)
    bn.gamma[...] = rng.uniform(0.5, 1.5, 4)
    return net


@pytest.fixture
def small_net():
    return _small_net


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory):
    from volnet.data import Normalizer, load
    from volnet.optim import make_optimizer
    from volnet.train import Trainer

    train = load("mnist5k", split="train")
    train = type(train)(train.images[:600], train.labels[:600], train.classes)
    net = build("INPUT[28x28x1] -> CONV5-6/P2 -> RELU -> POOL2 -> CONV3-8/P1 -> RELU -> POOL2 -> FC10", seed=0)
    out = tmp_path_factory.mktemp("digits")
    trainer = Trainer(net, make_optimizer("adam", net.params(), lr=0.003), train, epochs=2, batch_size=32,
                      normalizer=Normalizer.fit(train.images), out_dir=out,
                      extra_metadata={"data": {"name": "mnist5k", "root": None, "size": None, "grayscale": False,
                                               "val_split": 0.0, "classes": list(train.classes)}})
    trainer.run()
    return trainer.checkpoint_path
