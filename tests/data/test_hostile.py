"""Hostile inputs through the `volnet` command: refused in one line naming the flag, or reported; no traceback."""

import numpy as np
import pytest

from volnet.cli import main

Image = pytest.importorskip("PIL.Image")


def two_class_folder(root, rng, *classes):
    for name in classes:
        (root / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).save(root / name / "x.png")
    return root


def test_predict_says_how_each_image_was_converted(fc_checkpoint, tmp_path, capsys):
    rgba, gray = tmp_path / "rgba.png", tmp_path / "gray.png"
    Image.new("RGBA", (16, 12), (10, 20, 30, 255)).save(rgba)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gray)  # already the net's 8x8x1: nothing to say
    assert main(["predict", str(fc_checkpoint), str(rgba), str(gray)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"{rgba}: converted RGBA to grayscale, resized 12x16 to 8x8 (H x W)"
    assert len(lines) == 3
    assert lines[1].startswith(f"{rgba}: ") and lines[2].startswith(f"{gray}: ") and "%" in lines[2]


def test_train_with_a_huge_size_is_one_line(tmp_path, rng, capsys):
    root = two_class_folder(tmp_path / "pics", rng, "a", "b")
    code = main(["train", "--data", "folder", "--root", str(root), "--size", "1000000x1000000",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith(f"volnet train: error: loading {root} as 2 volumes of 1000000x1000000x3 (H x W x D) needs ")
    assert err.endswith("; use a smaller --size (size=(H, W))")


def test_train_on_one_class_is_one_line(tmp_path, rng, capsys):
    root = two_class_folder(tmp_path / "pics", rng, "cat")
    assert main(["train", "--data", "folder", "--root", str(root), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"volnet train: error: {root} has one class sub-folder (cat): a classifier needs at least two "
                   f"class sub-folders, laid out as {root}/<class>/*.png|jpg|jpeg, one sub-folder per class")


def test_train_with_a_crop_pad_larger_than_the_images_is_one_line(tmp_path, rng, capsys):
    root = two_class_folder(tmp_path / "pics", rng, "a", "b")
    code = main(["train", "--data", "folder", "--root", str(root), "--val-split", "0", "--augment", "crop",
                 "--crop-pad", "100000", "--arch", "INPUT -> FC", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == ("volnet train: error: --crop-pad 100000 (RandomCrop pad) must be smaller than the image's height "
                   "and width, 5x6: a larger pad lets a crop hold nothing but padding; use --crop-pad 4 or less")
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
