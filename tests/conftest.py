"""Shared test helpers: seeded random numbers, gradient checks, PyTorch layout.

Fixtures rather than importable functions, so that test modules in every
folder (``tests/ops``, ``tests/layers``, ...) reach them the same way.

* ``rng``          a NumPy Generator seeded from the test's id (stable across runs).
* ``check_kernel_grad`` ``check_kernel_grad(forward, backward, (x, w, b), hyper, rng)``
                   checks every gradient of an ops kernel pair.
* ``check_net_grad`` ``check_net_grad(net, x)`` checks the input and every
                   parameter gradient of a float64 network the same way.
* ``check_grad``   ``check_grad(f, array, analytic)`` asserts that the analytic
                   gradient of the scalar ``f()`` w.r.t. ``array`` matches centred
                   differences (:mod:`volnet.gradcheck`) to a relative error < 1e-6.
* ``tiny_checkpoint`` a session-wide checkpoint as ``volnet train`` writes it: a tiny CONV -> POOL ->
                   BatchNorm -> FC net, one epoch on the bundled digits, normalisation on, the class
                   names recorded (read it; never write beside it).
* ``fc_checkpoint`` a session-wide checkpoint of one FC layer on 8x8x1 volumes of two classes ("even",
                   "odd"), one epoch in a second: for the tests of hostile and damaged files.
* ``traced_peak``  ``traced_peak(f)``: the bytes ``f()`` allocates at its peak (tracemalloc), after one
                   untraced call (compiled and warm): what a kernel's workspace estimate is checked against.
* ``torch``        the torch module; the test is skipped when torch is missing.
* ``nchw``         converters between volnet's layout and PyTorch's:
                   volumes ``(N, H, W, D)`` <-> ``(N, C, H, W)`` and
                   conv filters ``(F, F, D, K)`` <-> ``(K, D, F, F)``.
"""

from __future__ import annotations

import types
import zlib

import numpy as np
import pytest

from volnet.gradcheck import numerical_gradient, relative_error

GRAD_TOL = 1e-6


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def assert_gradient(f, x: np.ndarray, analytic: np.ndarray, tol: float = GRAD_TOL, name: str = "gradient"):
    """Compare ``analytic`` with the centred-difference gradient of the scalar ``f()`` w.r.t. ``x``.

    ``x`` must be a contiguous float64 array that ``f`` reads (it is perturbed in place).
    """
    assert x.dtype == np.float64 and x.flags.c_contiguous
    assert analytic.shape == x.shape, f"{name}: shape {analytic.shape} != {x.shape}"
    numeric = numerical_gradient(f, x)
    error = relative_error(analytic, numeric)
    assert error < tol, f"{name}: relative error {error:.3g} >= {tol:g}"


@pytest.fixture
def check_grad():
    return assert_gradient


def measure_traced_peak(f) -> int:
    """Bytes ``f()`` allocates at its peak above what was allocated before, after one untraced call."""
    import tracemalloc

    f()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        f()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.fixture
def traced_peak():
    return measure_traced_peak


def assert_kernel_gradients(forward, backward, arrays, hyper, rng, names=("dx", "dw", "db")):
    """Check every gradient a kernel pair returns: ``backward(dout, cache)`` against centred
    differences of ``sum(forward(*arrays, **hyper)[0] * dout)``. Returns the forward output."""
    out, cache = forward(*arrays, **hyper)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)

    def loss():
        return float(np.sum(forward(*arrays, **hyper)[0] * dout))

    for array, grad, name in zip(arrays, grads, names):
        assert_gradient(loss, array, grad, name=name)
    return out


@pytest.fixture
def check_kernel_grad():
    """``check_kernel_grad(forward, backward, (x, w, b), hyper, rng)``: see :func:`assert_kernel_gradients`."""
    return assert_kernel_gradients


def assert_network_gradients(net, x, seed=0, before_forward=None):
    """Float64 centred differences for the input and every parameter of ``net``, forwarding with ``train=True``.

    Training mode, because BatchNorm's backward is the gradient of the
    batch-statistics function (its running averages play no part).
    ``before_forward`` runs before every forward pass (to fix dropout's mask).
    """
    prepare = before_forward or (lambda: None)
    rng = np.random.default_rng(seed)
    prepare()
    out = net.forward(x, train=True)
    dout = rng.standard_normal(out.shape)
    dx = net.backward(dout)

    def loss():
        prepare()
        return float(np.sum(net.forward(x, train=True) * dout))

    assert relative_error(dx, numerical_gradient(loss, x)) < GRAD_TOL, "input"
    for name, p in [(name, p) for layer in net for name, p in layer.named_params()]:
        numeric = numerical_gradient(loss, p.value)
        if np.abs(numeric).max() < 1e-7:
            # A bias right before BatchNorm: the mean it adds is subtracted again, so its true
            # gradient is zero and both sides are rounding noise, which a relative error magnifies.
            np.testing.assert_allclose(p.grad, 0, atol=1e-10, err_msg=name)
        else:
            assert relative_error(p.grad, numeric) < GRAD_TOL, name


@pytest.fixture
def check_net_grad():
    """``check_net_grad(net, x, seed=0, before_forward=None)``: see :func:`assert_network_gradients`."""
    return assert_network_gradients


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def nchw(torch):
    """Layout converters between volnet (NHWC, (F, F, D, K)) and PyTorch (NCHW, (K, D, F, F))."""

    def to_torch_nchw(x, requires_grad=False):
        return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=requires_grad)

    def from_torch_nchw(t):
        return t.detach().numpy().transpose(0, 2, 3, 1)

    def filters_to_torch(w, requires_grad=False):
        return torch.tensor(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), requires_grad=requires_grad)

    def filters_from_torch(t):
        return t.detach().numpy().transpose(2, 3, 1, 0)

    return types.SimpleNamespace(to_torch=to_torch_nchw, from_torch=from_torch_nchw,
                                 filters_to_torch=filters_to_torch, filters_from_torch=filters_from_torch)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from volnet.cli import main

    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> POOL2 -> BN -> FC", "--epochs", "1",
                 "--val-split", "0", "--out", str(out)]) == 0
    return out / "checkpoint.safetensors"


@pytest.fixture(scope="session")
def fc_checkpoint(tmp_path_factory):
    from volnet import Sequential
    from volnet.data import Dataset
    from volnet.layers import FC
    from volnet.optim import make_optimizer
    from volnet.train import Trainer

    rng = np.random.default_rng(0)
    data = Dataset(rng.random((8, 8, 8, 1), dtype=np.float32), np.arange(8) % 2, ("even", "odd"))
    net = Sequential([FC(2)], input_shape=(8, 8, 1), seed=0)
    trainer = Trainer(net, make_optimizer("sgd", net.params(), lr=0.1), data, epochs=1, batch_size=4,
                      out_dir=tmp_path_factory.mktemp("fc"), extra_metadata={"data": {"classes": list(data.classes)}})
    trainer.run()
    return trainer.checkpoint_path


@pytest.fixture(autouse=True)
def _fresh_conv_plans(monkeypatch):
    """CONV plans and prepared forward steps are remembered per shape (:mod:`volnet.ops.memo`): a test that
    monkeypatches a rule (``direct.applies``, ``winograd.MIN_TILES``, ``direct.ENABLED``, ...) sees plans made
    after each change."""
    from volnet.ops import memo

    memo.forget()
    patch = monkeypatch.setattr

    def patch_and_forget_plans(*args, **kwargs):
        patch(*args, **kwargs)
        memo.forget()

    monkeypatch.setattr = patch_and_forget_plans
    yield
    memo.forget()
