"""The minimal training loop and SGD with momentum."""

import numpy as np
import pytest

from volnet import Sequential
from volnet.layers import FC, Conv2D, MaxPool, Param, ReLU
from volnet.optim import SGD
from volnet.train import evaluate, fit, iterate_minibatches


def test_sgd_momentum_matches_hand_computed_steps():
    p = Param("w", np.array([1.0, -2.0]))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.array([0.5, 1.0])
    opt.step()  # v = g = [0.5, 1]; w -= 0.1*v
    np.testing.assert_allclose(p.value, [0.95, -2.1])
    opt.step()  # v = 0.9*v + g = [0.95, 1.9]; w -= 0.1*v
    np.testing.assert_allclose(p.value, [0.855, -2.29])
    np.testing.assert_allclose(opt.state()["velocity"][0], [0.95, 1.9])


def test_sgd_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    value = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(4)]
    p = Param("w", value.copy())
    opt = SGD([p], lr=0.05, momentum=0.9)
    t = torch.tensor(value.copy(), requires_grad=True)
    topt = torch.optim.SGD([t], lr=0.05, momentum=0.9)
    for g in grads:
        p.grad = g
        opt.step()
        t.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(p.value, t.detach().numpy(), rtol=1e-12)


def test_step_without_gradient_is_explained():
    with pytest.raises(RuntimeError, match="backward"):
        SGD([Param("w", np.zeros(2))]).step()


@pytest.mark.parametrize("kwargs, message", [({"lr": 0}, "learning rate"), ({"momentum": 1.0}, "momentum")])
def test_sgd_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGD([Param("w", np.zeros(2))], **kwargs)


def test_minibatches_cover_every_example_once():
    batches = list(iterate_minibatches(10, 4, np.random.default_rng(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches)) == list(range(10))


def test_fit_learns_a_separable_toy_problem():
    # class = which half of the image is bright: a CONV net must learn it quickly
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 256)
    images = rng.random((256, 8, 8, 1), dtype=np.float32) * 0.2
    images[labels == 0, :4] += 1.0
    images[labels == 1, 4:] += 1.0
    net = Sequential([Conv2D(4, 3, P=1), ReLU(), MaxPool(2, 2), FC(2)], input_shape=(8, 8, 1))
    loss_before, _ = evaluate(net, images, labels)
    history = fit(net, images, labels, SGD(net.params(), lr=0.05), epochs=5, batch_size=32)
    loss_after, accuracy = evaluate(net, images, labels)
    assert len(history) == 5 and history[-1].train_loss < history[0].train_loss
    assert accuracy == 1.0 and loss_after < loss_before / 5


def test_fit_rejects_labels_outside_the_class_scores():
    net = Sequential([FC(3)], input_shape=(2, 2, 1))
    with pytest.raises(ValueError, match="3 class scores"):
        fit(net, np.zeros((4, 2, 2, 1)), np.array([0, 1, 2, 3]), SGD(net.params()))
    with pytest.raises(ValueError, match="one label each"):
        fit(net, np.zeros((4, 2, 2, 1)), np.array([0, 1]), SGD(net.params()))
