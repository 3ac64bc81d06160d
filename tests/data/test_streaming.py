"""Folder images streamed from disk (``--stream``): the same batches, normaliser and weights as loaded whole."""

import os
from pathlib import Path

import numpy as np
import pytest

from volnet.cli import main
from volnet.data import DataError, Normalizer, load
from volnet.data.split import split_validation
from volnet.data.stream import FolderImages
from volnet.train.checkpoint import read

pytest.importorskip("PIL")


def write_folder(root: Path, per_class=7, seed=0):
    """Two classes of small RGB PNGs, of two sizes (so reading resizes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (9, 8, 3) if i % 2 else (8, 8, 3)
            pixels = rng.integers(0, 100, shape) + 150 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_indexing_reads_the_numbers_loading_would_in_any_order(tmp_path):
    root = write_folder(tmp_path / "pics")
    loaded = load("folder", root, size=(6, 5))
    streamed = load("folder", root, size=(6, 5), stream=True)
    assert isinstance(streamed.images, FolderImages) and streamed.images.shape == loaded.images.shape == (14, 6, 5, 3)
    np.testing.assert_array_equal(streamed.labels, loaded.labels)
    for index in (np.array([13, 0, 4]), np.arange(14), slice(2, 6), np.array([], dtype=np.int64)):
        batch = streamed.images[index]
        assert batch.dtype == np.float32
        np.testing.assert_array_equal(batch, loaded.images[index])
    np.testing.assert_array_equal(streamed.images[3], loaded.images[3])


def test_worker_processes_read_the_planned_batches_ahead(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "pics")
    loaded = load("folder", root, size=(6, 5), grayscale=True)
    images = load("folder", root, size=(6, 5), grayscale=True, stream=True, workers=2).images
    from volnet.data import stream

    readers = tmp_path / "readers"
    readers.mkdir()
    plain = stream._Reader.__getitem__

    def noting_pid(self, i):  # the DataLoader's worker processes are forked: they run this too
        (readers / str(os.getpid())).touch()
        return plain(self, i)

    monkeypatch.setattr(stream._Reader, "__getitem__", noting_pid)
    plan = [np.array([5, 2, 9]), np.array([0, 13]), np.array([7])]
    images.read_ahead(plan)
    for index in plan:
        np.testing.assert_array_equal(images[index], loaded.images[index])
    pids = {int(p.name) for p in readers.iterdir()}
    assert pids and os.getpid() not in pids  # read in other processes, none here


def test_streamed_normaliser_equals_the_loaded_one(tmp_path):
    root = write_folder(tmp_path / "pics", per_class=40)
    loaded = Normalizer.fit(load("folder", root, size=(7, 6)).images)
    streamed = Normalizer.fit(load("folder", root, size=(7, 6), stream=True).images)
    np.testing.assert_allclose(streamed.mean, loaded.mean, rtol=1e-6)
    np.testing.assert_allclose(streamed.std, loaded.std, rtol=1e-6)
    # in float64, before the normaliser's float32: the same numbers up to float64 rounding
    images = np.random.default_rng(0).random((50, 4, 3, 2), dtype=np.float32) * 3 + 1
    chunks = Normalizer.fit_batches(images[i:i + 7].astype(np.float64) for i in range(0, 50, 7))
    whole = [(images[..., c].mean(dtype=np.float64), images[..., c].std(dtype=np.float64)) for c in range(2)]
    fitted = Normalizer.fit_batches([images])
    for normaliser in (chunks, fitted):
        np.testing.assert_allclose(normaliser.mean, [m for m, _ in whole], rtol=1e-7)
        np.testing.assert_allclose(normaliser.std, [s for _, s in whole], rtol=1e-7)


def test_fit_batches_of_float64_matches_float64_statistics():
    images = np.random.default_rng(1).normal(5, 2, (33, 3, 3, 1))
    mean, std = images.mean(dtype=np.float64), images.std(dtype=np.float64)
    merged = Normalizer.fit_batches(images[i:i + 4] for i in range(0, 33, 4))
    # the float64 accumulation agrees to rounding; the normaliser keeps float32
    assert merged.mean[0] == np.float32(mean) and merged.std[0] == np.float32(std)


def test_validation_split_works_on_indices(tmp_path):
    root = write_folder(tmp_path / "pics")
    loaded_train, loaded_val = split_validation(load("folder", root, size=(6, 5)), 0.3, seed=2)
    train, val = split_validation(load("folder", root, size=(6, 5), stream=True), 0.3, seed=2)
    assert isinstance(train.images, FolderImages) and isinstance(val.images, FolderImages)
    np.testing.assert_array_equal(val.images[np.arange(len(val))], loaded_val.images)
    np.testing.assert_array_equal(train.images[np.arange(len(train))], loaded_train.images)
    np.testing.assert_array_equal(train.labels, loaded_train.labels)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_file_mid_epoch_is_a_data_error_naming_it(tmp_path, workers):
    root = write_folder(tmp_path / "pics")
    images = load("folder", root, size=(6, 5), stream=True, workers=workers).images
    broken = root / "light" / "3.png"
    broken.write_bytes(b"not a png")  # damaged after the data set was listed
    plan = [np.array([0, 1]), np.array([2, 10]), np.array([4])]
    images.read_ahead(plan)
    images[plan[0]]
    with pytest.raises(DataError, match=rf"{broken}: not a readable image"):
        images[plan[1]]


def test_an_image_of_another_size_without_size_is_refused_when_read(tmp_path):
    root = write_folder(tmp_path / "pics")
    images = load("folder", root, stream=True).images
    assert images.shape[1:] == (8, 8, 3)
    with pytest.raises(DataError, match=r"1\.png is 9x8 but .*0\.png is 8x8"):
        images[np.array([0, 1])]


def _train(tmp_path, root, name, *extra):
    out = tmp_path / name
    code = main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC", "--data", "folder", "--root", str(root),
                 "--size", "6x6", "--epochs", "2", "--batch-size", "4", "--augment", "crop,flip", "--crop-pad", "1",
                 "--val-split", "0.2", "--out", str(out), *extra])
    assert code == 0
    return read(out / "checkpoint.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_streamed_run_equals_the_run_in_memory(tmp_path, capsys, engine):
    if engine == "torch":
        pytest.importorskip("torch")
    root = write_folder(tmp_path / "pics", per_class=9)
    loaded, loaded_meta = _train(tmp_path, root, "loaded", "--engine", engine)
    streamed, streamed_meta = _train(tmp_path, root, "streamed", "--engine", engine, "--stream")
    printed = capsys.readouterr().out
    assert ("streamed from disk (" in printed) == (engine == "torch")  # reading processes on the torch engine
    assert loaded.keys() == streamed.keys()
    for name in loaded:
        np.testing.assert_allclose(streamed[name], loaded[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert [r["train_loss"] for r in streamed_meta["history"]] == pytest.approx(
        [r["train_loss"] for r in loaded_meta["history"]], rel=1e-5)


def test_stream_is_for_folder_data_only(tmp_path, capsys):
    assert main(["train", "--data", "mnist5k", "--stream", "--out", str(tmp_path / "run")]) == 2
    assert "--stream apply to --data folder only" in capsys.readouterr().err


def test_a_folder_too_large_for_memory_names_stream_which_then_reads_it(tmp_path, monkeypatch):
    from volnet import resources
    from volnet.resources import ResourceError

    root = write_folder(tmp_path / "pics", per_class=100)
    # 200 images of 20x20x3 need 1.2 MB loaded (5 bytes a value); a batch of 64 needs 384 kB
    monkeypatch.setattr(resources, "available_memory", lambda: resources.HEADROOM_BYTES + 800_000)
    with pytest.raises(ResourceError, match=r"use a smaller --size \(size=\(H, W\)\), or --stream"):
        load("folder", root, size=(20, 20))
    assert load("folder", root, size=(20, 20), stream=True).images[np.arange(200)].shape == (200, 20, 20, 3)
