"""MNIST from IDX files: header parsing, values, and every way a file can be wrong."""

import gzip
import re
import subprocess
import sys

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


# -- hostile headers and streams: refused from the header, before the payload is allocated or inflated --

BOMB_CHILD = """
import resource, sys
from volnet.data import DataError, read_idx
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_idx(sys.argv[1])
except DataError as error:
    print(error)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def idx_header(type_code, *shape):
    return bytes([0, 0, type_code, len(shape)]) + np.array(shape, ">u4").tobytes()


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    # 10 x 28 x 28 bytes declared, then 200 MiB of zeros: 200 gzip members of 1 MiB each, about 200 KB on disk
    path = tmp_path / "train-images-idx3-ubyte.gz"
    member = gzip.compress(bytes(2**20))
    path.write_bytes(gzip.compress(idx_header(0x08, 10, 28, 28) + bytes(7840)) + member * 200)
    assert path.stat().st_size < 500_000
    child = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(path)], capture_output=True, text=True, check=True)
    message, grown_kib = child.stdout.strip().splitlines()
    assert message == (f"{path}: unexpected bytes after the 10 x 28 x 28 elements (7840 bytes) its header "
                       f"declares; the gzip stream inflates to more than that")
    assert int(grown_kib) < 20 * 1024  # peak memory grew by under 20 MiB, not by the 200 MiB it inflates to


@pytest.mark.parametrize("gz", [False, True])
def test_header_whose_size_overflows_64_bits(tmp_path, gz):
    path = tmp_path / ("huge.gz" if gz else "huge")
    raw = idx_header(0x08, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(16)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: the header declares 4294967295 x "
                                        r"4294967295 x 4294967295 elements \(\d+ bytes\), more than a 64-bit size"):
        read_idx(path)


def test_header_larger_than_memory(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(idx_header(0x0E, 2**20, 2**20, 2**10) + bytes(16)))  # 8 PiB of float64
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: the 1048576 x 1048576 x 1024 array its header "
                                        r"declares needs 8192\.0 TiB .*, the machine has .*; the file is corrupt"):
        read_idx(path)
    plain = tmp_path / "huge"
    plain.write_bytes(idx_header(0x0E, 2**20, 2**20, 2**10) + bytes(16))  # a plain file: its size already says
    with pytest.raises(DataError, match=rf"^{re.escape(str(plain))}: truncated, "
                                        r".* \(9007199254740992 bytes\) but only 16 bytes"):
        read_idx(plain)


@pytest.mark.parametrize("extra, message", [(-5, r"truncated, .* 2 x 3 elements \(6 bytes\) but only 1 bytes"),
                                            (1, r"unexpected bytes after the 2 x 3 elements \(6 bytes\)")])
def test_gzip_stream_shorter_or_longer_than_its_header(tmp_path, extra, message):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_header(0x08, 2, 3) + bytes(6 + extra)))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: {message}"):
        read_idx(path)


@pytest.mark.parametrize("dtype", ["u1", ">i2", ">f8"])
def test_gzipped_values_are_native_and_writable(tmp_path, rng, write_idx, dtype):
    array = (rng.standard_normal((3, 4)) * 100).astype(dtype)
    out = read_idx(write_idx(tmp_path / "a.gz", array))
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and np.array_equal(out, array)
    out[0, 0] = 1  # the caller owns the array
    assert out[0, 0] == 1
