"""MNIST from IDX files: header parsing, values, and every way a file can be wrong."""

import gzip

import numpy as np
import pytest

from volnet.data import DataError, load, read_idx


def write_mnist(write_idx, folder, rng, n=3, gz=False, prefix="train", labels=None):
    folder.mkdir(exist_ok=True)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8) if labels is None else np.asarray(labels, np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split, prefix", [("train", "train"), ("test", "t10k")])
def test_mnist_values(tmp_path, rng, write_idx, gz, split, prefix):
    images, labels = write_mnist(write_idx, tmp_path, rng, gz=gz, prefix=prefix)
    data = load("mnist", tmp_path, split)
    assert data.images.shape == (3, 28, 28, 1) and data.images.dtype == np.float32
    assert data.images[1, 5, 7, 0] == np.float32(images[1, 5, 7]) / np.float32(255)
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert data.labels.dtype == np.int64 and data.labels.tolist() == labels.tolist()
    assert data.classes == tuple("0123456789")


def test_gzip_is_recognised_by_content(tmp_path, rng, write_idx):
    images, _ = write_mnist(write_idx, tmp_path, rng)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))  # gzipped under the plain name
    assert np.array_equal(read_idx(path), images)


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_types_and_byte_order(tmp_path, rng, write_idx, dtype):
    array = (rng.standard_normal((2, 3, 4)) * 100).astype(dtype)
    out = read_idx(write_idx(tmp_path / "a.idx", array))
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and np.array_equal(out, array)


def test_truncated_data(tmp_path, rng, write_idx):
    write_mnist(write_idx, tmp_path, rng)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated.*3 x 28 x 28.*2342 bytes"):
        load("mnist", tmp_path)


def test_truncated_header(tmp_path):
    (tmp_path / "short").write_bytes(b"\0\0\x08\x03\0\0")
    with pytest.raises(DataError, match="short: truncated.*header"):
        read_idx(tmp_path / "short")
    (tmp_path / "tiny").write_bytes(b"\0\0")
    with pytest.raises(DataError, match="tiny: truncated"):
        read_idx(tmp_path / "tiny")


def test_truncated_gzip(tmp_path, rng, write_idx):
    write_mnist(write_idx, tmp_path, rng, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: corrupt or truncated gzip"):
        load("mnist", tmp_path)


def test_wrong_magic_number(tmp_path, rng, write_idx):
    write_mnist(write_idx, tmp_path, rng)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: wrong magic number 0x12340801"):
        load("mnist", tmp_path)


def test_unknown_type_code(tmp_path):
    (tmp_path / "f").write_bytes(b"\0\0\x07\x01\0\0\0\x01x")
    with pytest.raises(DataError, match="wrong magic number 0x00000701"):
        read_idx(tmp_path / "f")


def test_labels_file_in_place_of_images(tmp_path, rng, write_idx):
    write_mnist(write_idx, tmp_path, rng)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: expected MNIST images \(IDX magic 0x00000803"):
        load("mnist", tmp_path)


def test_trailing_bytes(tmp_path, write_idx):
    path = write_idx(tmp_path / "x", np.zeros(4, np.uint8))
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(DataError, match="2 unexpected bytes"):
        read_idx(path)


def test_count_mismatch(tmp_path, rng, write_idx):
    write_mnist(write_idx, tmp_path, rng)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="holds 3 images but .*train-labels-idx1-ubyte holds 2 labels"):
        load("mnist", tmp_path)


def test_label_out_of_range(tmp_path, rng, write_idx):
    write_mnist(write_idx, tmp_path, rng, labels=[1, 2, 12])
    with pytest.raises(DataError, match="label 12 is not a digit"):
        load("mnist", tmp_path)


def test_missing_files_name_path_and_fetch(tmp_path):
    with pytest.raises(DataError, match="fetch") as info:
        load("mnist", tmp_path, "test")
    message = str(info.value)
    assert str(tmp_path / "t10k-images-idx3-ubyte") in message
    assert f'volnet.data.fetch("mnist", root={str(tmp_path)!r})' in message


def test_missing_from_cache_names_cache_and_fetch(cache):
    with pytest.raises(DataError) as info:
        load("mnist")
    assert str(cache / "mnist" / "train-images-idx3-ubyte") in str(info.value)
    assert 'volnet.data.fetch("mnist")' in str(info.value)
    assert not cache.exists()  # nothing downloaded or created


def test_split_given_as_root_is_explained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"split='test'"):
        load("mnist", "test")


def test_unknown_name_and_split():
    with pytest.raises(DataError, match="'mnist5k', 'mnist', 'cifar10', 'folder'"):
        load("imagenet")
    with pytest.raises(DataError, match="split must be 'train' or 'test'"):
        load("mnist", split="valid")


def test_option_a_loader_does_not_take(tmp_path):
    with pytest.raises(TypeError, match="grayscale"):
        load("mnist", tmp_path, grayscale=True)
