"""Classification figures, held to an independent computation by explicit loops over the images."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.train.metrics import TABLE_WIDTH, classification


def by_loops(scores, labels, C, ks):
    """Confusion, precision, recall, F1 and top-k computed one image and one class at a time."""
    confusion = [[0] * C for _ in range(C)]
    top = {k: 0 for k in ks}
    for row, label in zip(scores.tolist(), labels.tolist()):
        ranked = sorted(range(C), key=lambda c: -row[c])  # Python's sort is stable: ties by class index
        confusion[label][ranked[0]] += 1
        for k in ks:
            top[k] += label in ranked[:k]
    precision, recall, f1 = [], [], []
    for c in range(C):
        predicted = sum(confusion[t][c] for t in range(C))
        support = sum(confusion[c])
        p = confusion[c][c] / predicted if predicted else 0.0
        r = confusion[c][c] / support if support else 0.0
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return confusion, precision, recall, f1, {k: top[k] / len(labels) for k in ks}


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(1, 60), st.integers(0, 2**32 - 1), st.booleans())
def test_figures_equal_the_explicit_count(C, n, seed, ties):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, (n, C)).astype(float) if ties else rng.normal(size=(n, C))
    labels = rng.integers(0, C, n)
    ks = [k for k in (1, 2, 3, 5) if k <= C]
    figures = classification(scores, labels, [f"c{i}" for i in range(C)], top_k=(1, 2, 3, 5))
    confusion, precision, recall, f1, top = by_loops(scores, labels, C, ks)
    assert figures.confusion.tolist() == confusion
    np.testing.assert_allclose(figures.precision, precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(figures.recall, recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(figures.f1, f1, rtol=0, atol=1e-12)
    assert figures.top_k == pytest.approx(top, abs=1e-12) and list(figures.top_k) == ks
    assert figures.accuracy == pytest.approx(top[1], abs=1e-12)
    document = figures.to_dict()
    assert document["per_class"]["c0"]["support"] == sum(confusion[0])


def test_a_hand_worked_example():
    # true 0,0,1,2 predicted 0,1,1,1: precision of 1 = 1/3, recall of 1 = 1, recall of 0 = 1/2
    scores = np.array([[3, 1, 0], [1, 2, 0], [0, 5, 1], [0, 2, 1]], float)
    figures = classification(scores, np.array([0, 0, 1, 2]), "abc", top_k=(1, 2))
    assert figures.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert figures.precision.tolist() == [1.0, pytest.approx(1 / 3), 0.0]
    assert figures.recall.tolist() == [0.5, 1.0, 0.0]
    assert figures.f1.tolist() == [pytest.approx(2 / 3), 0.5, 0.0]
    assert figures.top_k == {1: 0.5, 2: 1.0}


def test_table_fits_80_columns_for_10_classes_and_says_where_a_larger_matrix_is():
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    labels = rng.integers(0, 10, 50_000)
    scores = rng.normal(size=(50_000, 10)) + 3 * np.eye(10)[labels]
    table = classification(scores, labels, names).table()
    assert max(map(len, table.splitlines())) <= TABLE_WIDTH
    assert "1 automobi" in table and "top-5" in table and "(the" not in table
    many = classification(rng.normal(size=(40, 30)), rng.integers(0, 30, 40), [f"k{i}" for i in range(30)]).table()
    assert max(map(len, many.splitlines())) <= TABLE_WIDTH
    assert "the 30x30 confusion matrix does not fit 80 columns: --json holds it" in many


def test_names_must_match_the_scores():
    with pytest.raises(ValueError, match="3 scores per image but 2 class names"):
        classification(np.zeros((1, 3)), np.zeros(1, int), "ab")
