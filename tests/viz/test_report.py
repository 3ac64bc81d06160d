"""The report page (volnet.viz.report, `volnet report`, `volnet train --report`) and the picture arrays."""

from __future__ import annotations

import re

import numpy as np
import pytest

from volnet.cli import main
from volnet.viz import activation_grid, colorize, filter_grid, save_png
from volnet.viz.heatmap import heatmap_with_legend
from volnet.viz.svg import line_chart


@pytest.fixture(scope="module")
def page_text(digits_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "report.html"
    assert main(["report", str(digits_checkpoint), "-o", str(out), "--samples", "2", "--test-limit", "200"]) == 0
    return out.read_text()


@pytest.mark.slow
def test_the_page_is_self_contained(page_text):
    assert page_text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page_text), "an outside address"
    assert "<link" not in page_text and "<script src" not in page_text
    for section in ("architecture", "training", "results", "activations", "filters", "explain", "conv-demo"):
        assert f'<section id="{section}">' in page_text
    assert "INPUT[28x28x1] -&gt; CONV5-6/S1/P2" in page_text  # the notation
    assert "accuracy" in page_text and "data:image/png;base64," in page_text


def test_the_page_assets_ship_as_package_data():
    """report.py reads its skeleton, style and script from viz/assets/; a wheel carries them only if
    pyproject.toml's package-data names them."""
    import fnmatch
    import pathlib

    tomllib = pytest.importorskip("tomllib")
    import volnet

    root = pathlib.Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["volnet"]
    package = pathlib.Path(volnet.__file__).parent
    assets = [path.relative_to(package).as_posix() for path in (package / "viz" / "assets").rglob("*")]
    assert {"viz/assets/report.html", "viz/assets/report.css", "viz/assets/report.js"} <= set(assets)
    # setuptools' "*" does not reach into subfolders, so the assets stay in one folder
    assert all(name.count("/") == 2 and any(fnmatch.fnmatch(name, p) for p in patterns) for name in assets)


def test_report_command_says_what_it_wrote(digits_checkpoint, tmp_path, capsys):
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(digits_checkpoint), "-o", str(out), "--samples", "1", "--test-limit", "50"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.stat().st_size > 10_000


def test_report_of_given_images(digits_checkpoint, tmp_path):
    from PIL import Image

    from volnet.viz.report import build_report

    path = tmp_path / "seven.png"
    Image.fromarray(np.tri(40, 30, dtype=np.uint8) * 255).save(path)  # not 28x28: resized, and said so
    text = build_report(digits_checkpoint, [path], test_limit=50)
    assert "seven.png" in text and "resized" in text


@pytest.mark.slow
def test_train_report_rewrites_the_page_after_every_epoch(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC", "--epochs", "1", "--batch-size", "128",
                 "--out", str(out), "--report"]) == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    text = (out / "report.html").read_text()
    assert "(epoch 1)" in text
    assert '<meta http-equiv="refresh"' not in text  # the run is finished: its page no longer reloads
    assert not list(out.glob("*.tmp*")), "a temporary file was left behind"


def test_pictures_are_arrays(tmp_path, rng):
    volume = rng.standard_normal((6, 5, 7))
    grid = activation_grid(volume)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 6 + 2, 3 * 5 + 2, 3)  # 7 slices in a 3x3 grid
    assert filter_grid(rng.standard_normal((3, 3, 3, 8))).shape == (3 * 3 + 2, 3 * 3 + 2, 3)  # colour tiles
    assert filter_grid(rng.standard_normal((3, 3, 4, 2))).shape == (2 * 3 + 1, 4 * 3 + 3, 3)  # filter x depth
    ramp = colorize(np.array([[0.0, 1.0]]), "grey")
    assert ramp[0, 0].tolist() == [0, 0, 0] and ramp[0, 1].tolist() == [255, 255, 255]
    picture = heatmap_with_legend(np.zeros((28, 28, 1)), rng.random((4, 4)), label="P(3)")
    assert picture.shape == (252 + 34, 252, 3)
    assert save_png(picture, tmp_path / "a" / "heat.png").stat().st_size > 100


def test_line_chart_is_svg_with_one_line_per_series():
    chart = line_chart({"a": [(1, 0.5), (2, 0.25)], "b": [(1, None), (2, 0.3)]}, title="loss")
    assert chart.startswith("<svg") and chart.count("<polyline") == 2


def test_a_picture_shows_itself_in_notebooks_as_the_png_of_its_enlarged_array():
    import io

    from PIL import Image

    from volnet.viz import Picture

    picture = colorize(np.array([[0.0, 1.0], [0.5, 0.25]]), "grey")
    shown = Picture(picture, scale=3)
    assert shown.array.shape == (6, 6, 3) and (shown.array[:3, :3] == picture[0, 0]).all()
    decoded = np.asarray(Image.open(io.BytesIO(shown._repr_png_())))
    assert (decoded == shown.array).all()
