"""Folders of images (root/<class>/*.png), read with Pillow."""

import re
import sys

import numpy as np
import pytest

from volnet import resources
from volnet.data import DataError, load
from volnet.data.images import read_image, read_image_with_note
from volnet.resources import ResourceError

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
    save(tmp_path / "b" / "x.png", random_image(rng))
    data = load("folder", tmp_path)
    assert data.images.shape == (4, 5, 6, 3)
    assert data.images[2, 0, 0].tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])


def test_grayscale(tmp_path):
    save(tmp_path / "a" / "x.png", np.full((4, 4, 3), 200))
    save(tmp_path / "b" / "x.png", np.full((4, 4, 3), 10))
    data = load("folder", tmp_path, grayscale=True)
    assert data.images.shape == (2, 4, 4, 1) and data.images[0, 1, 2, 0] == np.float32(200) / np.float32(255)


def test_different_sizes_need_size(tmp_path, rng):
    save(tmp_path / "a" / "x.png", random_image(rng, 5, 6))
    save(tmp_path / "b" / "y.png", random_image(rng, 7, 3))
    with pytest.raises(DataError, match=r"y.png is 7x3 but .*x.png is 5x6 \(H x W\); pass --size HxW \(size=\(H, W\)\)"):
        load("folder", tmp_path)
    data = load("folder", tmp_path, size=(4, 8))
    assert data.images.shape == (2, 4, 8, 3)
    assert load("folder", tmp_path, size=9).images.shape == (2, 9, 9, 3)


def test_resize_of_a_constant_image_keeps_its_value(tmp_path):
    save(tmp_path / "a" / "x.png", np.full((10, 10, 3), 120))
    save(tmp_path / "b" / "x.png", np.full((6, 4, 3), 120))
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
    with pytest.raises(DataError, match=r"needs --root FOLDER \(root=FOLDER\), laid out as FOLDER/train/<class>/"):
        load("folder")
    with pytest.raises(DataError, match="is not a folder"):
        load("folder", tmp_path / "missing")
    with pytest.raises(DataError, match="has no class sub-folders"):
        load("folder", tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match=r"has one class sub-folder \(a\): a classifier needs at least two"):
        load("folder", tmp_path)
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"no .png/.jpg/.jpeg images in the class folders .*\(a, b\)"):
        load("folder", tmp_path)


def test_unreadable_image(tmp_path, rng):
    save(tmp_path / "b" / "x.png", random_image(rng))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load("folder", tmp_path)


def test_missing_pillow_is_explained(tmp_path, rng, monkeypatch):
    save(tmp_path / "a" / "x.png", random_image(rng))
    save(tmp_path / "b" / "x.png", random_image(rng))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install pillow .*pip install '\.\[images\]'"):
        load("folder", tmp_path)


def test_one_class_is_refused(tmp_path, rng):
    save(tmp_path / "cat" / "x.png", random_image(rng))
    save(tmp_path / "cat" / "y.png", random_image(rng))
    with pytest.raises(DataError) as info:
        load("folder", tmp_path)
    assert str(info.value) == (f"{tmp_path} has one class sub-folder (cat): a classifier needs at least two class "
                               f"sub-folders, laid out as {tmp_path}/<class>/*.png|jpg|jpeg, one sub-folder per class")


def test_train_split_with_images_in_one_class_only_is_refused(tmp_path, rng):
    save(tmp_path / "train" / "cat" / "x.png", random_image(rng))
    (tmp_path / "train" / "dog").mkdir()
    save(tmp_path / "test" / "dog" / "x.png", random_image(rng))
    with pytest.raises(DataError, match=rf"^only {re.escape(str(tmp_path / 'train' / 'cat'))} holds images; "
                                        r"a classifier needs images in at least two class sub-folders"):
        load("folder", tmp_path, "train")
    test = load("folder", tmp_path, "test")  # evaluating on one class is fine
    assert test.classes == ("cat", "dog") and test.labels.tolist() == [1]


def test_huge_size_is_refused_before_allocating(tmp_path, rng):
    save(tmp_path / "a" / "x.png", random_image(rng))
    save(tmp_path / "b" / "x.png", random_image(rng))
    with pytest.raises(ResourceError, match=r"^loading .* as 2 volumes of 1000000x1000000x3 \(H x W x D\) needs "
                                            r".*; use a smaller --size"):
        load("folder", tmp_path, size=10**6)
    with pytest.raises(ResourceError, match=r"x.png as 1 volumes of 1000000x1000000x1 .*; use a smaller --size"):
        read_image(tmp_path / "a" / "x.png", size=10**6, grayscale=True)


def test_huge_folder_without_size_is_refused(tmp_path, rng, monkeypatch):
    save(tmp_path / "a" / "x.png", random_image(rng, 50, 40))
    save(tmp_path / "b" / "x.png", random_image(rng, 50, 40))
    monkeypatch.setattr(resources, "available_memory", lambda: 60_000)  # the two stacks fit, not the working image
    # 5 N H W D for the uint8 and float32 stacks + H W (4 + D) for Pillow's working image and its copy = 74000
    with pytest.raises(ResourceError, match=r"2 volumes of 50x40x3 \(H x W x D\) needs 72\.3 KiB \(74\.0 kB\), "
                                            r"the machine has 58\.6 KiB .*; use a smaller --size"):
        load("folder", tmp_path)


@pytest.mark.parametrize("grayscale", [True, False])
def test_16_bit_images_are_scaled_not_clipped(tmp_path, grayscale):
    values = np.array([[0, 257 * 100, 257 * 200, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    expected = np.float32([0, 100, 200, 255]) / np.float32(255)
    volume, note = read_image_with_note(tmp_path / "deep.png", size=(1, 4), grayscale=grayscale)
    np.testing.assert_array_equal(volume[0, :, 0], expected)
    assert note == ("converted 16-bit grayscale to 8 bits" if grayscale else "converted 16-bit grayscale to RGB")
    save(tmp_path / "b" / "x.png", np.zeros((1, 4, 3)))
    (tmp_path / "a").mkdir()
    (tmp_path / "deep.png").rename(tmp_path / "a" / "deep.png")
    data = load("folder", tmp_path, grayscale=grayscale)
    np.testing.assert_array_equal(data.images[0, 0, :, 0], expected)


def test_read_image_notes_what_it_converted(tmp_path, rng):
    Image.new("RGBA", (8, 6), (10, 20, 30, 40)).save(tmp_path / "rgba.png")
    volume, note = read_image_with_note(tmp_path / "rgba.png", size=(4, 4), grayscale=True)
    assert volume.shape == (4, 4, 1) and note == "converted RGBA to grayscale, resized 6x8 to 4x4 (H x W)"
    np.testing.assert_allclose(volume, np.float32(round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)) / 255, rtol=1e-6)
    save(tmp_path / "rgb.png", random_image(rng, 4, 4))
    assert read_image_with_note(tmp_path / "rgb.png", size=4)[1] == ""
    assert read_image_with_note(tmp_path / "rgb.png", size=4, grayscale=True)[1] == "converted RGB to grayscale"
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "gray.png")
    assert read_image_with_note(tmp_path / "gray.png", size=(4, 5))[1] == "converted grayscale to RGB"
