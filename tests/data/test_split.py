"""split_validation: a seeded, class-stratified hold-out that partitions the training set."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volnet.data import DataError, Dataset
from volnet.data.split import split_validation


def numbered(labels, classes=("a", "b", "c", "d")) -> Dataset:
    """One 1x1x1 image per label whose pixel is its index, so that every image can be traced."""
    labels = np.asarray(labels, np.int64)
    return Dataset(np.arange(len(labels), dtype=np.float32).reshape(-1, 1, 1, 1), labels, classes)


def indices(data: Dataset) -> np.ndarray:
    return data.images.ravel().astype(int)


@settings(max_examples=80, deadline=None)
@given(counts=st.lists(st.integers(2, 30), min_size=1, max_size=4), fraction=st.floats(0.05, 0.9),
       seed=st.integers(0, 2**32 - 1))
def test_every_class_gives_its_rounded_share_and_the_two_sides_partition_the_set(counts, fraction, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    data = numbered(labels)
    held = [int(round(fraction * c)) for c in counts]
    if sum(held) in (0, len(labels)):
        with pytest.raises(DataError, match=r"--val-split .* holds out (no image|all)"):
            split_validation(data, fraction, seed)
        return
    train, val = split_validation(data, fraction, seed)
    assert sorted(np.concatenate([indices(train), indices(val)])) == list(range(len(labels)))
    for side in (train, val):
        np.testing.assert_array_equal(side.labels, labels[indices(side)])  # each image keeps its label
        assert np.all(np.diff(indices(side)) > 0)  # and the set's order
        assert side.classes == data.classes and side.images.dtype == np.float32
    assert [int((val.labels == c).sum()) for c in range(len(counts))] == held


def test_the_seed_decides_which_images_are_held_out():
    data = numbered(np.repeat([0, 1], 50), ("a", "b"))
    first, again, other = (indices(split_validation(data, 0.2, seed)[1]) for seed in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert len(first) == len(other) == 20 and set(first) != set(other)


def test_the_held_out_share_of_a_known_set():
    # 10 of class 0 and 5 of class 1 at 0.2: 2 and 1 held out (round(0.2 * 5) = 1), 12 left to train on
    train, val = split_validation(numbered([0] * 10 + [1] * 5, ("a", "b")), 0.2, seed=0)
    assert (len(train), len(val)) == (12, 3)
    assert sorted(val.labels.tolist()) == [0, 0, 1]


def test_no_fraction_holds_nothing_out():
    data = numbered([0, 1, 2])
    train, val = split_validation(data, 0)
    assert train is data and val is None


@pytest.mark.parametrize("fraction", [-0.1, 1, 1.5])
def test_a_fraction_outside_0_to_1_is_refused(fraction):
    with pytest.raises(DataError, match=rf"validation fraction must be in \[0, 1\), got {fraction}"):
        split_validation(numbered([0, 1]), fraction)


def test_a_fraction_that_rounds_to_nothing_says_so():
    with pytest.raises(DataError, match=r"--val-split 0.1 \(val_split\) holds out no image: 0.1 of each class's "
                                        r"images rounds to 0 \(the largest class has 1\); pass a larger --val-split"):
        split_validation(numbered([0, 1, 2]), 0.1)
