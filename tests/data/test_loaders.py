"""load(name, root, split): the bundled digits, dispatch to each format's loader, and the errors of the entry point."""

import numpy as np
import pytest

from volnet.data import DataError, load
from volnet.data import loaders


def write_mnist_split(write_idx, folder, prefix, images, labels):
    folder.mkdir(exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", np.asarray(images, np.uint8))
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.asarray(labels, np.uint8))


@pytest.fixture
def mnist_folder(tmp_path, write_idx):
    """IDX files of both splits: two training images of 255s, labelled 3 and 4; one test image of 0s, labelled 7."""
    folder = tmp_path / "mnist"
    write_mnist_split(write_idx, folder, "train", np.full((2, 28, 28), 255), [3, 4])
    write_mnist_split(write_idx, folder, "t10k", np.zeros((1, 28, 28)), [7])
    return folder


@pytest.mark.parametrize("split, images", [("train", 4000), ("test", 1000)])
def test_the_bundled_digits(split, images):
    data = load("mnist5k", split=split)
    assert data.images.shape == (images, 28, 28, 1) and data.images.dtype == np.float32
    assert data.images.min() == 0 and data.images.max() == 1 and data.images.flags.c_contiguous
    assert data.classes == tuple("0123456789") and sorted(set(data.labels.tolist())) == list(range(10))


@pytest.mark.slow
def test_the_bundled_digits_take_the_split_as_the_second_argument():
    positional, named = load("mnist5k", "test"), load("mnist5k", split="test")
    np.testing.assert_array_equal(positional.images, named.images)
    np.testing.assert_array_equal(positional.labels, named.labels)


def test_the_bundled_digits_take_no_root(tmp_path):
    with pytest.raises(DataError, match=r"mnist5k is bundled .* takes no --root \(root=\); for your own images pass "
                                         r"--data folder --root FOLDER .* for the full MNIST --data mnist"):
        load("mnist5k", tmp_path)


def test_each_split_reads_its_own_files(mnist_folder):
    train, test = load("mnist", mnist_folder, "train"), load("mnist", mnist_folder, split="test")
    assert train.labels.tolist() == [3, 4] and (train.images == 1).all()
    assert test.labels.tolist() == [7] and (test.images == 0).all() and test.images.shape == (1, 28, 28, 1)


def test_a_folder_named_like_a_split_is_a_root(mnist_folder, monkeypatch):
    monkeypatch.chdir(mnist_folder.parent)
    mnist_folder.rename(mnist_folder.parent / "test")
    assert load("mnist", "test").labels.tolist() == [3, 4]  # the train split of the folder ./test


def test_a_split_given_as_the_root_says_how_to_ask_for_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where no folder is called "test"
    with pytest.raises(DataError, match=r"root='test' is not a folder; for the test split write "
                                         r"load\('mnist', split='test'\)"):
        load("mnist", "test")


def test_an_unknown_data_set_lists_the_known_ones():
    with pytest.raises(DataError, match=r"unknown data set 'imagenet'; available: 'mnist5k', 'mnist', 'cifar10', "
                                         r"'folder'$"):
        load("imagenet")
    assert list(loaders.LOADERS) == ["mnist5k", "mnist", "cifar10", "folder"]


@pytest.mark.parametrize("name", ["mnist5k", "mnist", "cifar10", "folder"])
def test_an_unknown_split_is_refused_before_any_file_is_read(name, tmp_path):
    with pytest.raises(DataError, match="split must be 'train' or 'test', got 'val'"):
        load(name, None if name == "mnist5k" else tmp_path, "val")


def test_options_reach_the_named_loader(mnist_folder):
    with pytest.raises(TypeError, match="grayscale"):
        load("mnist", mnist_folder, grayscale=True)  # a folder option, which MNIST does not take
    Image = pytest.importorskip("PIL.Image")  # Pillow is an optional dependency, not volnet's own code
    for name, colour in (("dark", (10, 20, 30)), ("light", (250, 240, 230))):
        (mnist_folder / "pictures" / name).mkdir(parents=True)
        Image.new("RGB", (6, 4), colour).save(mnist_folder / "pictures" / name / "one.png")
    data = load("folder", mnist_folder / "pictures", size=(2, 3), grayscale=True)
    assert data.images.shape == (2, 2, 3, 1) and data.classes == ("dark", "light")
    assert data.images[0].max() < 0.1 < 0.9 < data.images[1].min()
