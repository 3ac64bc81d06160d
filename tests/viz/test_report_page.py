"""The report page against what issue 21 found: unbounded --samples, nets ending in a volume or GAP, markup in
class names, non-UTF-8 names, a finished run that kept reloading, a flat learning-rate chart and a CONV demo whose
shown numbers did not add up."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from volnet.cli import main

Image = pytest.importorskip("PIL.Image")


def folder_run(root, out, classes=("a", "b"), test_counts=(5, 4), arch="INPUT -> CONV3-2 -> RELU -> FC", epochs=1,
               extra=()):
    """A one-epoch run on root/{train,test}/<class>/ of 8x8 grey PNGs; its checkpoint path."""
    rng = np.random.default_rng(0)
    for split, counts in (("train", (4,) * len(classes)), ("test", test_counts)):
        for name, count in zip(classes, counts):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["train", "--data", "folder", "--root", str(root), "--grayscale", "--arch", arch, "--epochs",
                 str(epochs), "--val-split", "0", "--batch-size", "4", "--out", str(out), *extra]) == 0
    return out / "checkpoint.safetensors"


def page_data(text: str) -> dict:
    payload = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S).group(1)
    return json.loads(payload)


@pytest.fixture(scope="module")
def nine_test_images(tmp_path_factory):
    base = tmp_path_factory.mktemp("nine")
    return folder_run(base / "pics", base / "run")


# -- item 6: --samples is bounded by the data and the page ----------------------------------------

def test_samples_beyond_the_test_split_show_each_test_image_once(nine_test_images):
    from volnet.viz.report import build_report

    shown = [image["name"] for image in page_data(build_report(nine_test_images, samples=30))["images"]]
    assert sorted(shown) == sorted(f"test image {i}" for i in range(9))


def test_a_huge_samples_is_a_usage_error_naming_the_limit(nine_test_images, tmp_path, capsys):
    from volnet.viz.report import MAX_SAMPLES

    with pytest.raises(SystemExit) as exit_:
        main(["report", str(nine_test_images), "-o", str(tmp_path / "r.html"), "--samples", "1000000"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--samples" in err and f"1..{MAX_SAMPLES}" in err
    assert not (tmp_path / "r.html").exists()


def test_images_past_the_page_budget_are_left_out_and_said_so(nine_test_images, monkeypatch):
    from volnet.viz import report

    one = len(json.dumps(page_data(report.build_report(nine_test_images, samples=1))["images"][0]))
    monkeypatch.setattr(report, "PAGE_BUDGET", int(2.5 * one))
    text = report.build_report(nine_test_images, samples=6)
    assert len(page_data(text)["images"]) == 2
    assert "4 more images were left out" in text


# -- item 10: nets that end in a volume or in GAP --------------------------------------------------

def test_a_model_of_a_net_ending_in_a_volume_is_refused_before_saving(tmp_path):
    import volnet
    from volnet.spec import build

    net = build("INPUT[8x8x1] -> CONV3-4/P1 -> POOL4", seed=0)
    with pytest.raises(ValueError, match=r"ends in a 2x2x4 volume: end it with FC\(classes\) or GlobalAvgPool"):
        volnet.Model(net)
    assert not list(tmp_path.iterdir())


def test_predict_and_report_of_a_net_ending_in_gap(tmp_path, capsys):
    import volnet
    from volnet.spec import build

    net = build("INPUT[8x8x1] -> CONV3-3/P1 -> GAP", seed=0)
    path = volnet.Model(net, classes=("x", "y", "z")).save(tmp_path / "gap.safetensors")
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(image)
    probabilities = volnet.load(path).predict(np.asarray(Image.open(image), np.float32)[..., None] / 255)
    assert main(["predict", str(path), str(image), "--top-k", "3"]) == 0
    line = capsys.readouterr().out.strip()
    shown = dict(part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", "))
    assert shown == {c: f"{p:.1%}" for c, p in zip("xyz", probabilities)}
    assert main(["report", str(path), str(image), "-o", str(tmp_path / "r.html")]) == 0
    data = page_data((tmp_path / "r.html").read_text())
    assert data["images"][0]["probabilities"] == pytest.approx(probabilities.tolist(), rel=1e-5)
    assert [e for e in data["images"][0]["explanations"] if e["name"].startswith("saliency")][0].get("src")
    from volnet.train import evaluate

    images = np.random.default_rng(1).random((6, 8, 8, 1), dtype=np.float32)
    _, accuracy = evaluate(net, images, np.arange(6) % 3)  # `volnet eval`'s numbers
    assert accuracy == np.mean(volnet.Model(net).predict(images).argmax(axis=1) == np.arange(6) % 3)


# -- item 11: the page ---------------------------------------------------------------------------

def test_markup_in_class_names_cannot_end_the_pages_script(tmp_path):
    from volnet.viz.report import build_report

    classes = ("<!--<script>", "<script>b")  # a folder name cannot hold "/", so no "</script>" here
    text = build_report(folder_run(tmp_path / "pics", tmp_path / "run", classes=classes))
    payload = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S).group(1)
    assert "<" not in payload and ">" not in payload
    assert page_data(text)["classes"] == sorted(classes)


def test_a_non_utf8_class_folder_is_reported(tmp_path, capsys):
    import os

    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8, so Python holds them as a surrogate escape
    checkpoint = folder_run(tmp_path / "pics", tmp_path / "run", classes=("b", name))
    assert main(["report", str(checkpoint), "-o", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_bytes().decode("utf-8")  # valid UTF-8
    assert page_data(text)["classes"] == ["b", "caf\ufffd"] and "caf\ufffd" in text


def test_a_finished_runs_report_stops_reloading(tmp_path, capsys):
    checkpoint = folder_run(tmp_path / "pics", tmp_path / "run", epochs=2, extra=["--report"])
    assert capsys.readouterr().out.count(f"wrote {checkpoint.parent / 'report.html'}") == 2
    text = (checkpoint.parent / "report.html").read_text()
    assert "(epoch 2)" in text and 'http-equiv="refresh"' not in text


def test_a_constant_learning_rate_is_drawn_around_its_value():
    from volnet.viz.svg import line_chart

    chart = line_chart({"learning rate": [(1, 0.002), (2, 0.002), (3, 0.002)]}, title="learning rate")
    labels = [float(t) for t in re.findall(r'text-anchor="end" font-size="10">([^<]+)</text>', chart)]
    assert min(labels) > 0 and min(labels) <= 0.002 <= max(labels) and max(labels) < 0.01
    top, bottom = 26, 240 - 34
    ys = {float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', chart)}
    assert len(ys) == 1 and abs(ys.pop() - (top + bottom) / 2) < 30


def test_legends_sit_above_the_plot_not_on_the_curves():
    from volnet.viz.svg import line_chart

    chart = line_chart({"train": [(1, 1.0), (2, 0.5)], "validation": [(1, 1.1), (2, 0.6)]}, title="loss")
    plot_top = float(re.search(r'<rect x="\d+" y="([\d.]+)" width="\d+" height="[\d.]+" fill="#fafafa"', chart)[1])
    legend_ys = [float(y) for y in re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="10" height="3"', chart)]
    assert len(legend_ys) == 2 and max(legend_ys) + 3 <= plot_top


def test_first_layer_filters_say_how_their_colours_read(nine_test_images):
    from volnet.viz.report import build_report

    text = build_report(nine_test_images, samples=1)
    caption = re.search(r"<figcaption>layer 1 \(Conv2D\)[^<]*</figcaption>", text)[0]
    assert "grey tiles" not in caption and "red positive, blue negative" in caption
    assert re.search(r'filters of layer 1.*?class="legend"', text, re.S)


def test_the_occlusion_overlay_reads_as_its_legend():
    """Zero (no effect) leaves the image as it is and the ends are the legend's full blue and red: the map was
    shifted to [0, 1] and then stretched again over its own range, so white was not at zero."""
    from volnet.viz.pictures import COLORMAPS, blend

    image = np.full((4, 4, 1), 0.5)
    values = np.array([[0.0, 0.3], [0.0, -0.1]])  # occlusion: mostly a rise in probability
    picture = blend(image, values, "signed", alpha=0.6, fade=True).astype(int)
    assert (picture[:2, :2] == 128).all()  # no effect: the image's own grey
    red = (0.4 * 0.5 + 0.6 * COLORMAPS["signed"][2]) * 255
    assert np.abs(picture[0, 2:] - red).max() <= 1  # the largest magnitude: the legend's end
    assert picture[2, 2, 2] > picture[2, 2, 0]  # a drop: bluish, a third as strong


def test_the_results_section_shows_the_figures_volnet_eval_prints(tmp_path, capsys):
    """Issue 25: the page's precision, recall, F1 and top-k are eval's, on the same test split."""
    from volnet.viz.report import build_report

    checkpoint = folder_run(tmp_path / "pics", tmp_path / "run", classes=("a", "b", "c"), test_counts=(5, 4, 3))
    capsys.readouterr()
    assert main(["eval", str(checkpoint), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    page = build_report(checkpoint, samples=1)
    section = page.split('id="results"', 1)[1].split("</section>", 1)[0]
    cells = re.findall(r"<td class='acc'>([0-9.]+)</td>", section)
    expected = [f"{figures['per_class'][c][q]:.3f}" for c in ("a", "b", "c") for q in ("precision", "recall", "f1")]
    expected += [f"{figures['macro'][q]:.3f}" for q in ("precision", "recall", "f1")]
    assert cells == expected
    assert f"top-1 {figures['top_k']['1']:.2%}" in section and f"top-3 {figures['top_k']['3']:.2%}" in section
