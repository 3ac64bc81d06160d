"""CIFAR-10 from binary batches, python batches (restricted unpickler) and tarballs."""

import io
import pickle
import tarfile

import numpy as np
import pytest

from volnet.data import DataError, load
from volnet.data.cifar import BINARY_DIR, CLASSES, PYTHON_DIR

N = 4  # images per batch
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def make_batches(rng, names=(*TRAIN, "test_batch")):
    return {name: (rng.integers(0, 256, size=(N, 3072), dtype=np.uint8),
                   rng.integers(0, 10, size=N).tolist()) for name in names}


def write_binary(folder, batches):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    return folder


def write_python(folder, batches, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder


def expected_images(batches, names):
    data = np.concatenate([batches[n][0] for n in names])
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) / 255


def check(dataset, batches, names):
    assert dataset.images.shape == (N * len(names), 32, 32, 3) and dataset.images.dtype == np.float32
    assert dataset.images.flags.c_contiguous
    assert dataset.labels.dtype == np.int64
    assert dataset.labels.tolist() == sum((batches[n][1] for n in names), [])
    data, _ = batches[names[-1]]  # one pixel by hand: row 5, column 7, green plane of the last image
    assert dataset.images[-1, 5, 7, 1] == np.float32(data[-1, 1024 + 5 * 32 + 7]) / np.float32(255)
    np.testing.assert_allclose(dataset.images, expected_images(batches, names), rtol=1e-6)


@pytest.mark.parametrize("split, names", [("train", TRAIN), ("test", ["test_batch"])])
def test_binary_batches(tmp_path, rng, split, names):
    batches = make_batches(rng)
    write_binary(tmp_path / BINARY_DIR, batches)
    data = load("cifar10", tmp_path, split)
    check(data, batches, names)
    assert data.classes == CLASSES


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("split, names", [("train", TRAIN), ("test", ["test_batch"])])
def test_python_batches(tmp_path, rng, protocol, split, names):
    batches = make_batches(rng)
    write_python(tmp_path / PYTHON_DIR, batches, protocol)
    check(load("cifar10", tmp_path, split), batches, names)


def test_numpy1_pickles_load(tmp_path, rng):
    """The official files name numpy.core.multiarray (NumPy 1), not numpy._core."""
    batches = make_batches(rng, ["test_batch"])
    path = write_python(tmp_path, batches) / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray\n" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    check(load("cifar10", tmp_path, "test"), batches, ["test_batch"])


def test_class_names_from_meta(tmp_path, rng):
    names = [f"c{i}" for i in range(10)]
    folder = write_python(tmp_path / PYTHON_DIR, make_batches(rng, ["test_batch"]))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in names]}, 2))
    assert load("cifar10", tmp_path, "test").classes == tuple(names)
    folder = write_binary(tmp_path / "bin", make_batches(rng, ["test_batch"]))
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    assert load("cifar10", folder, "test").classes == tuple(names)


def make_tarball(path, source, arcname):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=arcname)


@pytest.mark.parametrize("tarball, sub, writer", [("cifar-10-python.tar.gz", PYTHON_DIR, write_python),
                                                   ("cifar-10-binary.tar.gz", BINARY_DIR, write_binary)])
def test_tarball_is_extracted(tmp_path, rng, tarball, sub, writer):
    batches = make_batches(rng)
    make_tarball(tmp_path / tarball, writer(tmp_path / "staging", batches), sub)
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / tarball).rename(root / tarball)
    check(load("cifar10", root, "test"), batches, ["test_batch"])
    assert sorted(p.name for p in root.iterdir()) == sorted([tarball, sub])  # no temporary folder left
    check(load("cifar10", root, "train"), batches, TRAIN)  # second load reads the extracted folder


def test_corrupt_tarball(tmp_path, rng):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b not really a tarball")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: bad or corrupt archive") as info:
        load("cifar10", tmp_path)
    assert "\n" not in str(info.value)  # tarfile's reasons, one per method it tried, on the one line
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]


def test_truncated_tarball(tmp_path, rng):
    make_tarball(tmp_path / "t.tar.gz", write_python(tmp_path / "staging", make_batches(rng)), PYTHON_DIR)
    raw = (tmp_path / "t.tar.gz").read_bytes()
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="bad or corrupt archive"):
        load("cifar10", root)
    assert [p.name for p in root.iterdir()] == ["cifar-10-python.tar.gz"]


def test_tarball_escaping_its_folder_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="bad or corrupt archive"):
        load("cifar10", root)
    assert not (tmp_path / "escaped.txt").exists()


def test_tarball_without_the_batches_folder(tmp_path):
    (tmp_path / "other").mkdir()
    make_tarball(tmp_path / "cifar-10-python.tar.gz", tmp_path / "other", "other")
    with pytest.raises(DataError, match="has no cifar-10-batches-py/ folder"):
        load("cifar10", tmp_path)


class Payload:
    """Unpickling this calls ``function(argument)``; a loader that allows it runs attacker code."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("function, name", [("os.system", r"(posix|os)\.system"),
                                            ("eval", r"(__builtin__|builtins)\.eval")])
@pytest.mark.parametrize("where", ["top", "labels"])
@pytest.mark.parametrize("protocol", [2, 5])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, function, name, where, protocol):
    import os

    marker = tmp_path / "pwned"
    payload = (Payload(os.system, f"touch {marker}") if function == "os.system"
               else Payload(eval, f"open({str(marker)!r}, 'w')"))
    batch = payload if where == "top" else {b"data": np.zeros((1, 3072), np.uint8), b"labels": [payload]}
    folder = tmp_path / PYTHON_DIR
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(DataError, match=f"test_batch: refusing to unpickle {name}"):
        load("cifar10", tmp_path, "test")
    assert not marker.exists()


def test_truncated_binary_batch(tmp_path, rng):
    folder = write_binary(tmp_path / BINARY_DIR, make_batches(rng, ["test_batch"]))
    path = folder / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="test_batch.bin: 12192 bytes is not a whole number of 3073-byte records"):
        load("cifar10", tmp_path, "test")


def test_truncated_python_batch(tmp_path, rng):
    folder = write_python(tmp_path / PYTHON_DIR, make_batches(rng, ["test_batch"]))
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="test_batch: not a readable CIFAR-10 python batch"):
        load("cifar10", tmp_path, "test")


def test_python_batch_of_the_wrong_shape(tmp_path):
    folder = tmp_path / PYTHON_DIR
    write_python(folder, {"test_batch": (np.zeros((2, 100), np.uint8), [0, 1])})
    with pytest.raises(DataError, match=r"'data' should be a uint8 array of shape \(n, 3072\)"):
        load("cifar10", tmp_path, "test")
    write_python(folder, {"test_batch": (np.zeros((2, 3072), np.uint8), [0, 1, 2])})
    with pytest.raises(DataError, match=r"2 images but labels of shape \(3,\)"):
        load("cifar10", tmp_path, "test")
    write_python(folder, {"test_batch": (np.zeros((2, 3072), np.uint8), [0, 10])})
    with pytest.raises(DataError, match="labels span 0..10"):
        load("cifar10", tmp_path, "test")


def test_missing_batch(tmp_path, rng):
    write_binary(tmp_path / BINARY_DIR, make_batches(rng, ["data_batch_1", "data_batch_2", "test_batch"]))
    with pytest.raises(DataError, match="batch data_batch_3 .* is missing"):
        load("cifar10", tmp_path)


def test_missing_everything_names_paths_and_fetch(tmp_path, cache):
    with pytest.raises(DataError, match="fetch") as info:
        load("cifar10", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / PYTHON_DIR) in str(info.value)
    assert str(tmp_path / "nowhere" / "cifar-10-python.tar.gz") in str(info.value)
    with pytest.raises(DataError, match=r'volnet\.data\.fetch\("cifar10"\)'):
        load("cifar10")
