"""Classifier losses: softmax cross-entropy and multiclass SVM (hinge)."""

import math

import numpy as np
import pytest

from volnet.ops import LOSSES, softmax_cross_entropy, svm_hinge
from volnet.shapes import ShapeError

# CS231n's three-image example: scores for (cat, car, frog) of a cat, a car and a frog image.
SCORES = np.array([[3.2, 5.1, -1.7],
                   [1.3, 4.9, 2.0],
                   [2.2, 2.5, -3.1]])
LABELS = np.array([0, 1, 2])


def test_losses_registry():
    assert LOSSES == {"softmax": softmax_cross_entropy, "svm": svm_hinge}


# ---------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------


def test_svm_hinge_on_the_three_image_example():
    loss, dscores = svm_hinge(SCORES, LABELS)
    # cat: max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9
    # car: max(0, 1.3 - 4.9 + 1) + max(0, 2.0 - 4.9 + 1) = 0
    # frog: max(0, 2.2 + 3.1 + 1) + max(0, 2.5 + 3.1 + 1) = 12.9
    assert isinstance(loss, float)
    assert loss == pytest.approx((2.9 + 0 + 12.9) / 3)
    # Each violated margin adds +1 to its class and -1 to the correct class, over N.
    np.testing.assert_allclose(dscores, np.array([[-1, 1, 0], [0, 0, 0], [1, 1, -2]]) / 3)


def test_svm_hinge_margin():
    loss, _ = svm_hinge(SCORES, LABELS, margin=3.0)
    # cat: 4.9 + 0; car: 0 + 0.1; frog: 8.3 + 8.6
    assert loss == pytest.approx((4.9 + 0.1 + 8.3 + 8.6) / 3)


def test_softmax_cross_entropy_by_hand():
    scores = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    loss, dscores = softmax_cross_entropy(scores, np.array([2, 0]))
    # Row 0: -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2); row 1: uniform, log 3.
    assert isinstance(loss, float)
    assert loss == pytest.approx((math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(3)) / 2)
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(dscores, np.array([p - [0, 0, 1], [1 / 3 - 1, 1 / 3, 1 / 3]]) / 2)


def test_softmax_cross_entropy_cs231n_example():
    # scores -2.85, 0.86, 0.28 with the third class correct: probability 0.353, loss 1.04.
    loss, _ = softmax_cross_entropy(np.array([[-2.85, 0.86, 0.28]]), np.array([2]))
    assert loss == pytest.approx(1.04, abs=5e-3)


def test_softmax_is_shift_invariant_and_does_not_overflow(rng):
    scores = rng.standard_normal((4, 5))
    labels = np.array([0, 4, 2, 2])
    loss, dscores = softmax_cross_entropy(scores, labels)
    big_loss, big_dscores = softmax_cross_entropy(scores + 1000.0, labels)
    assert big_loss == pytest.approx(loss, rel=1e-10)
    np.testing.assert_allclose(big_dscores, dscores, atol=1e-12)
    np.testing.assert_allclose(dscores.sum(axis=1), 0.0, atol=1e-15)  # probabilities minus one-hot


@pytest.mark.parametrize("name", LOSSES.keys())
def test_loss_keeps_float32_gradients(name, rng):
    scores = rng.standard_normal((3, 4)).astype(np.float32)
    loss, dscores = LOSSES[name](scores, np.array([0, 1, 3]))
    assert isinstance(loss, float) and dscores.dtype == np.float32 and dscores.shape == (3, 4)


# ---------------------------------------------------------------------------
# Gradient checks
# ---------------------------------------------------------------------------


def test_softmax_gradient(rng, check_grad):
    scores = rng.standard_normal((5, 4)) * 2
    labels = rng.integers(0, 4, 5)
    _, dscores = softmax_cross_entropy(scores, labels)
    check_grad(lambda: softmax_cross_entropy(scores, labels)[0], scores, dscores, name="dscores")


def test_svm_gradient(rng, check_grad):
    scores = rng.standard_normal((6, 5)) * 2
    labels = rng.integers(0, 5, 6)
    margins = scores - scores[np.arange(6), labels][:, None] + 1
    assert np.min(np.abs(margins)) > 1e-4  # away from the hinge's kink
    _, dscores = svm_hinge(scores, labels)
    check_grad(lambda: svm_hinge(scores, labels)[0], scores, dscores, name="dscores")


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------


def test_softmax_matches_torch_cross_entropy(rng, torch):
    scores = rng.standard_normal((8, 10)) * 3
    labels = rng.integers(0, 10, 8)
    loss, dscores = softmax_cross_entropy(scores, labels)
    st = torch.tensor(scores, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(st, torch.tensor(labels))
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(dscores, st.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_svm_is_torch_multi_margin_loss_times_the_number_of_classes(margin, rng, torch):
    # torch averages the hinge terms over the C classes as well; CS231n (and volnet) sums them.
    N, C = 8, 6
    scores = rng.standard_normal((N, C))
    labels = rng.integers(0, C, N)
    loss, dscores = svm_hinge(scores, labels, margin=margin)
    st = torch.tensor(scores, requires_grad=True)
    loss_t = torch.nn.functional.multi_margin_loss(st, torch.tensor(labels), margin=margin)
    loss_t.backward()
    assert loss > 0
    assert loss == pytest.approx(loss_t.item() * C, rel=1e-12)
    np.testing.assert_allclose(dscores, st.grad.numpy() * C, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES.keys())
@pytest.mark.parametrize("scores, labels, error, match", [
    pytest.param(np.zeros(3), np.array([0]), ShapeError, r"scores must be \(N, classes\), got shape \(3,\)",
                 id="scores-1d"),
    pytest.param(np.zeros((2, 3, 1)), np.array([0, 1]), ShapeError, r"scores must be \(N, classes\)",
                 id="scores-3d"),
    pytest.param(np.zeros((3, 4)), np.array([0, 1]), ShapeError,
                 r"expected 3 labels \(one per score row\), got shape \(2,\)", id="too-few-labels"),
    pytest.param(np.zeros((2, 4)), np.array([[0], [1]]), ShapeError, r"expected 2 labels", id="labels-2d"),
    pytest.param(np.zeros((2, 3)), np.array([0, 3]), ValueError, r"label 3 is out of range for 3 classes",
                 id="label-too-large"),
    pytest.param(np.zeros((2, 3)), np.array([-1, 0]), ValueError, r"label -1 is out of range", id="label-negative"),
    pytest.param(np.zeros((2, 3)), np.array([0.0, 1.0]), ValueError, r"labels must be integers",
                 id="float-labels"),
    pytest.param(np.array([[0.0, np.nan], [1.0, 2.0]]), np.array([0, 1]), ValueError,
                 r"scores contain NaN or Inf \(in 1 of 2 rows, first row 0\)", id="nan-scores"),
    pytest.param(np.array([[0.0, 1.0], [np.inf, 2.0]]), np.array([0, 1]), ValueError,
                 r"NaN or Inf .*first row 1", id="inf-scores"),
])
def test_bad_input_is_named(name, scores, labels, error, match):
    with pytest.raises(error, match=match):
        LOSSES[name](scores, labels)
