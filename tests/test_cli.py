"""The `volnet` command and the bundled data set."""

import numpy as np
import pytest

from volnet.cli import main
from volnet.data import load


def test_bundled_digits_split():
    train, test = load("mnist5k", "train"), load("mnist5k", "test")
    assert train.images.shape == (4000, 28, 28, 1) and test.images.shape == (1000, 28, 28, 1)
    assert train.images.dtype == np.float32 and 0 <= train.images.min() and train.images.max() <= 1
    assert np.bincount(test.labels).tolist() == [100] * 10


def test_unknown_data_set_is_explained():
    with pytest.raises(ValueError, match="mnist5k"):
        load("imagenet")


@pytest.mark.slow
def test_demo_trains_to_useful_accuracy(capsys):
    assert main(["demo", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.rsplit("test accuracy: ", 1)[1].split("%")[0])
    assert accuracy > 88.0
    assert "28x28x12" in out and "14x14x12" in out


def test_bad_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--epochs", "many"])
    assert info.value.code == 2
