"""Files from an untrusted data set or user through the `volnet` command (issue 21): a file that is not the PNG or
JPEG it claims never reaches another decoder (Ghostscript), a damaged one is one line naming it, an output never
replaces an input. Run as the user runs it: `python -m volnet` in a subprocess."""

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest


Image = pytest.importorskip("PIL.Image")

SRC = Path(__file__).resolve().parents[1] / "src"
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n")


def volnet(*args, cwd, path_prefix=None):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    return subprocess.run([sys.executable, "-m", "volnet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def chunk(cid: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + cid + body + struct.pack(">I", zlib.crc32(cid + body))


def broken_png() -> bytes:
    """An 8x8 grey PNG whose pixels continue past the first IDAT into a chunk with a bad name: Pillow raises
    ``SyntaxError`` while decoding (not at open)."""
    pixels = zlib.compress(b"".join(b"\x00" + bytes(range(8)) for _ in range(8)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", pixels[:10]) + b"\x00\x00\x00\x04\x00\x01\x02\x03" + b"zzzz" * 2 + chunk(b"IEND", b""))


@pytest.fixture
def fake_gs(tmp_path):
    """A `gs` first on PATH that records being called: Pillow's EPS decoder runs Ghostscript by that name."""
    folder = tmp_path / "bin"
    folder.mkdir()
    called = tmp_path / "gs-was-called"
    script = folder / "gs"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {called}\nexit 1\n")
    script.chmod(0o755)
    return folder, called


def image_folder(root, rng, bad: bytes | None = None, bad_split="train"):
    """root/{train,test}/{a,b}/ with four 8x8 grey PNGs each; ``bad`` is written as one more `.png` of class a."""
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    if bad is not None:
        (root / bad_split / "a" / "z.png").write_bytes(bad)
    return root


def one_error_line(result, *needles):
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- item 1: only the documented formats are decoded -----------------------------------------------

def test_predict_refuses_eps_named_png_without_running_ghostscript(fc_checkpoint, tmp_path, fake_gs):
    folder, called = fake_gs
    fake = tmp_path / "x.png"
    fake.write_bytes(EPS)
    line = one_error_line(volnet("predict", fc_checkpoint, fake, cwd=tmp_path, path_prefix=folder),
                          str(fake), "PNG or JPEG")
    assert line.startswith("volnet predict: error: ")
    assert not called.exists()


def test_report_refuses_eps_named_png_without_running_ghostscript(fc_checkpoint, tmp_path, fake_gs):
    folder, called = fake_gs
    fake = tmp_path / "x.png"
    fake.write_bytes(EPS)
    one_error_line(volnet("report", fc_checkpoint, fake, "-o", tmp_path / "r.html", cwd=tmp_path,
                          path_prefix=folder), str(fake), "PNG or JPEG")
    assert not called.exists() and not (tmp_path / "r.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_train_on_a_folder_with_eps_named_png_never_runs_ghostscript(tmp_path, rng, fake_gs, stream):
    folder, called = fake_gs
    root = image_folder(tmp_path / "pics", rng, EPS)
    result = volnet("train", "--data", "folder", "--root", root, "--arch", "INPUT -> FC", "--epochs", "1",
                    "--val-split", "0", "--out", tmp_path / "run", *(["--stream"] if stream else []),
                    cwd=tmp_path, path_prefix=folder)
    one_error_line(result, str(root / "train" / "a" / "z.png"), "PNG or JPEG")
    assert not called.exists()


def test_open_image_decodes_only_png_and_jpeg(tmp_path, rng):
    from volnet.data import DataError
    from volnet.data.images import read_image

    pixels = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    for fmt in ("BMP", "GIF", "TIFF"):
        path = tmp_path / f"x-{fmt}.png"
        Image.fromarray(pixels).save(path, format=fmt)
        with pytest.raises(DataError, match=f"{path}: not a readable image: its bytes are not PNG or JPEG"):
            read_image(path, size=(4, 5))
    jpeg = tmp_path / "x.png"  # a JPEG named .png is still a documented format: read by its bytes
    Image.fromarray(pixels).save(jpeg, format="JPEG")
    assert read_image(jpeg, size=(4, 5)).shape == (4, 5, 3)


# -- item 7: every decoder error is one line naming the file ---------------------------------------

def test_predict_on_a_png_broken_after_its_first_chunk_is_one_line(fc_checkpoint, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(broken_png())
    one_error_line(volnet("predict", fc_checkpoint, bad, cwd=tmp_path), f"{bad}: not a readable image",
                   "broken PNG")


@pytest.mark.parametrize("engine, stream", [("numpy", False), ("numpy", True), ("torch", False), ("torch", True)])
def test_train_on_a_folder_with_a_broken_png_is_one_line(tmp_path, rng, engine, stream):
    if engine == "torch":
        pytest.importorskip("torch")
    root = image_folder(tmp_path / "pics", rng, broken_png())
    result = volnet("train", "--data", "folder", "--root", root, "--arch", "INPUT -> FC", "--epochs", "1",
                    "--val-split", "0", "--out", tmp_path / "run", "--engine", engine,
                    *(["--stream"] if stream else []), cwd=tmp_path)
    one_error_line(result, f"{root / 'train' / 'a' / 'z.png'}: not a readable image")


@pytest.mark.slow
def test_a_broken_test_image_does_not_stop_train_report(tmp_path, rng):
    root = image_folder(tmp_path / "pics", rng, broken_png(), bad_split="test")
    result = volnet("train", "--data", "folder", "--root", root, "--arch", "INPUT -> FC", "--epochs", "2",
                    "--val-split", "0", "--out", tmp_path / "run", "--report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "epoch 2" in result.stdout and (tmp_path / "run" / "report.html").is_file()
    page = (tmp_path / "run" / "report.html").read_text()
    assert f"{root / 'test' / 'a' / 'z.png'}: not a readable image" in page  # item 11: the page says why


# -- item 2: an output never replaces an input ----------------------------------------------------

def png(path, rng):
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
    return path


def links_to(target, tmp_path):
    """The target itself, a hard link and a symbolic link to it: the same file by three names."""
    hard, soft = tmp_path / f"hard-{target.name}", tmp_path / f"soft-{target.name}"
    os.link(target, hard)
    soft.symlink_to(target)
    return [target, hard, soft]


@pytest.fixture
def own_checkpoint(fc_checkpoint, tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(fc_checkpoint.read_bytes())
    return path


def refused(result, before: dict, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    for needle in ("is the input", *needles):
        assert needle in result.stderr, result.stderr
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} was changed"


@pytest.mark.slow
def test_report_refuses_to_write_over_its_checkpoint_or_image(own_checkpoint, tmp_path, rng):
    image = png(tmp_path / "a.png", rng)
    before = {own_checkpoint: own_checkpoint.read_bytes(), image: image.read_bytes()}
    for output in links_to(own_checkpoint, tmp_path):
        refused(volnet("report", own_checkpoint, "-o", output, "--overwrite", cwd=tmp_path), before, "-o/--output")
    for output in links_to(image, tmp_path):
        refused(volnet("report", own_checkpoint, image, "-o", output, "--overwrite", cwd=tmp_path), before)


@pytest.mark.slow
def test_export_refuses_to_write_over_its_checkpoint(own_checkpoint, tmp_path):
    pytest.importorskip("onnx")
    before = {own_checkpoint: own_checkpoint.read_bytes()}
    for output in links_to(own_checkpoint, tmp_path):
        refused(volnet("export", own_checkpoint, output, cwd=tmp_path), before, "MODEL.onnx")


@pytest.mark.slow
def test_predict_heatmap_refuses_to_write_over_its_image(own_checkpoint, tmp_path, rng):
    image = png(tmp_path / "a.png", rng)
    before = {image: image.read_bytes(), own_checkpoint: own_checkpoint.read_bytes()}
    for output in [*links_to(image, tmp_path), own_checkpoint]:
        refused(volnet("predict", own_checkpoint, image, "--slide", "--heatmap", output, cwd=tmp_path), before,
                "--heatmap")


@pytest.mark.slow
def test_report_without_output_does_not_silently_replace_report_html(own_checkpoint, tmp_path):
    first = volnet("report", own_checkpoint, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    page = tmp_path / "report.html"
    page.write_text("my own notes")
    again = volnet("report", own_checkpoint, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "report.html already exists" in again.stderr and "--overwrite" in again.stderr
    assert page.read_text() == "my own notes"
    replaced = volnet("report", own_checkpoint, "--overwrite", cwd=tmp_path)
    assert replaced.returncode == 0 and page.read_text().startswith("<!DOCTYPE html>")
