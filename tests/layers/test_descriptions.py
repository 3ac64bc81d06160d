"""Each layer kind describes itself once (``volnet.layers.base``): analysis, the notation and the
PyTorch bridge ask the layer, so a new kind needs one class and nothing else.

The identity here: a layer kind defined outside volnet (a Softsign, here in the test) is analysed,
parsed, written and converted without a line changed in ``volnet.analysis``, ``volnet.spec`` or
``volnet.interop``.
"""

import math

import numpy as np
import pytest

from volnet import Sequential
from volnet.analysis import analyze_layers
from volnet.layers import LAYER_TYPES, FC, Conv2D, Costs, Keyword, Layer, ReLU
from volnet.ops.workspace import BackwardWorkspace, ForwardWorkspace
from volnet.spec import build, to_notation
from volnet.spec.keywords import BY_LAYER, KEYWORDS


@pytest.fixture
def softsign():
    class Softsign(Layer):
        """``x / (1 + |x|)`` elementwise: the hypothetical new layer kind of ``docs/architecture.md``."""

        kind = "softsign"
        keyword = Keyword("SOFTSIGN")

        def output_shape(self, input_shape):
            return input_shape

        def forward(self, x, train=False, *, keep=None, workers=None):
            out = x / (1 + np.abs(x))
            self._keep(x, train, keep)
            return out

        def backward(self, dout, input_grad=True, *, workers=None):
            x = self._take_cache()
            return dout / (1 + np.abs(x)) ** 2

        def costs(self, input_shape, output_shape):
            return Costs(0, 0, 3 * math.prod(output_shape))  # abs, add, divide per value

        def forward_workspace(self, work):
            return ForwardWorkspace((), work.n_out * work.itemsize, keeps_input=True)

        def backward_workspace(self, work, input_grad=True, dout_contiguous=True):
            return BackwardWorkspace(2 * work.n_in * work.itemsize, work.n_in * work.itemsize)

        def to_torch(self, bridge, order):
            return bridge.step(self, [bridge.nn.Softsign()]), order

    yield Softsign
    del LAYER_TYPES["Softsign"]


def test_a_new_layer_kind_is_analysed_from_its_own_description(softsign):
    report = analyze_layers([Conv2D(4, 3, P=1), softsign(), FC(10)], (8, 8, 3), batch=4)
    row = report.rows[1]
    assert (row.kind, row.other_ops, row.params, row.rf.size) == ("softsign", 3 * 8 * 8 * 4, 0, (3, 3))
    assert report.train.total > report.inference.total > 0
    assert not report.notes  # described: not an "unknown layer type"


def test_a_new_layer_kind_is_parsed_and_written_in_the_notation(softsign):
    assert KEYWORDS["SOFTSIGN"].layer == "Softsign" and BY_LAYER["Softsign"].name == "SOFTSIGN"
    net = build("INPUT[8x8x3] -> CONV3-4 -> SOFTSIGN -> FC10")
    assert type(net.layers[1]) is softsign
    assert to_notation(net) == "INPUT[8x8x3] -> CONV3-4/S1/P1 -> SOFTSIGN -> FC10"


def test_a_new_layer_kind_converts_to_pytorch(softsign):
    pytest.importorskip("torch")  # torch is optional for volnet; the bridge's own tests need it
    from volnet.interop import to_torch

    net = Sequential([Conv2D(4, 3, P=1), softsign(), FC(10)], input_shape=(8, 8, 3), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    model = to_torch(net).eval()
    import torch

    theirs = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).detach().numpy()
    np.testing.assert_allclose(theirs, net.forward(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(name for name, cls in LAYER_TYPES.items() if not name.startswith("_")))
def test_every_volnet_layer_kind_describes_itself(name):
    cls = LAYER_TYPES[name]
    assert cls.kind != "other", f"{name} has no kind"
    assert cls.__dict__.get("keyword") is not None, f"{name} declares no notation keyword"
    assert cls.costs is not Layer.costs, f"{name} counts no costs of its own"
