"""Folders of images (root/<class>/*.png), read with Pillow."""

import sys

import numpy as np
import pytest

from volnet.data import DataError, load

Image = pytest.importorskip("PIL.Image")


def save(path, pixels, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, np.uint8)).save(path, format=fmt)
    return path


def random_image(rng, h=5, w=6):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_classes_labels_and_pixels(tmp_path, rng):
    dog, cat1, cat2 = random_image(rng), random_image(rng), random_image(rng)
    save(tmp_path / "dog" / "a.png", dog)
    save(tmp_path / "cat" / "b.png", cat2)
    save(tmp_path / "cat" / "a.PNG", cat1)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    data = load("folder", tmp_path)
    assert data.classes == ("cat", "dog")
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [0, 0, 1]
    assert data.images.shape == (3, 5, 6, 3) and data.images.dtype == np.float32
    assert data.images[1, 2, 3, 0] == np.float32(cat2[2, 3, 0]) / np.float32(255)  # sorted names: a.PNG, b.png
    np.testing.assert_allclose(data.images, np.stack([cat1, cat2, dog]) / 255, rtol=1e-6)


def test_jpeg_and_modes_become_rgb(tmp_path, rng):
    save(tmp_path / "a" / "x.jpg", random_image(rng))
    Image.fromarray(np.full((5, 6), 77, np.uint8), mode="L").save(tmp_path / "a" / "y.jpeg")
    Image.new("RGBA", (6, 5), (10, 20, 30, 40)).save(tmp_path / "a" / "z.png")
    data = load("folder", tmp_path)
    assert data.images.shape == (3, 5, 6, 3)
    assert data.images[2, 0, 0].tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])


def test_grayscale(tmp_path):
    save(tmp_path / "a" / "x.png", np.full((4, 4, 3), 200))
    data = load("folder", tmp_path, grayscale=True)
    assert data.images.shape == (1, 4, 4, 1) and data.images[0, 1, 2, 0] == np.float32(200) / np.float32(255)


def test_different_sizes_need_size(tmp_path, rng):
    save(tmp_path / "a" / "x.png", random_image(rng, 5, 6))
    save(tmp_path / "b" / "y.png", random_image(rng, 7, 3))
    with pytest.raises(DataError, match=r"y.png is 7x3 but .*x.png is 5x6 \(H x W\); pass size=\(H, W\)"):
        load("folder", tmp_path)
    data = load("folder", tmp_path, size=(4, 8))
    assert data.images.shape == (2, 4, 8, 3)
    assert load("folder", tmp_path, size=9).images.shape == (2, 9, 9, 3)


def test_resize_of_a_constant_image_keeps_its_value(tmp_path):
    save(tmp_path / "a" / "x.png", np.full((10, 10, 3), 120))
    data = load("folder", tmp_path, size=(3, 7))
    np.testing.assert_allclose(data.images, 120 / 255, rtol=1e-6)


def test_train_test_layout_shares_labels(tmp_path, rng):
    for split, classes in [("train", ["ant", "bee", "cow"]), ("test", ["bee", "cow"])]:
        for name in classes:
            save(tmp_path / split / name / "x.png", random_image(rng))
    train, test = load("folder", tmp_path, "train"), load("folder", tmp_path, "test")
    assert train.classes == test.classes == ("ant", "bee", "cow")
    assert train.labels.tolist() == [0, 1, 2] and test.labels.tolist() == [1, 2]


def test_test_split_without_layout_is_explained(tmp_path, rng):
    save(tmp_path / "a" / "x.png", random_image(rng))
    with pytest.raises(DataError, match=r"no test/ folder.*train/<class>/\*.png and .*test/<class>/\*.png"):
        load("folder", tmp_path, "test")


def test_layout_errors(tmp_path, rng):
    with pytest.raises(DataError, match="needs root="):
        load("folder")
    with pytest.raises(DataError, match="is not a folder"):
        load("folder", tmp_path / "missing")
    with pytest.raises(DataError, match="has no class sub-folders"):
        load("folder", tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match=r"no .png/.jpg/.jpeg images in the class folders .*\(a\)"):
        load("folder", tmp_path)


def test_unreadable_image(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load("folder", tmp_path)


def test_missing_pillow_is_explained(tmp_path, rng, monkeypatch):
    save(tmp_path / "a" / "x.png", random_image(rng))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install pillow .*pip install volnet\[images\]"):
        load("folder", tmp_path)
