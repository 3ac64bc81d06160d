"""The report page in a real browser: headless Chromium driven by Playwright.

Skipped, with the reason, where Playwright or a Chromium is missing; with
``VOLNET_REQUIRE_BROWSER=1`` (what ``.ci/run`` sets) they fail instead.
Chromium is Debian's (``/usr/bin/chromium``, or ``$VOLNET_CHROMIUM``):
Playwright's own browser download does not work offline.
"""

from __future__ import annotations

import io
import os
import re
import shutil

import numpy as np
import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECTIONS = ["architecture", "training", "results", "activations", "filters", "explain", "conv-demo"]


def _chromium() -> tuple[str | None, str]:
    """The browser's path, or None and why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "the playwright package is not installed (pip install -e '.[dev]')"
    for candidate in (os.environ.get("VOLNET_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and os.path.exists(candidate):
            return candidate, ""
    return None, "no Chromium found (apt-get install chromium, or set VOLNET_CHROMIUM)"


@pytest.fixture(scope="module")
def browser():
    path, reason = _chromium()
    if path is None:
        if os.environ.get("VOLNET_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VOLNET_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def report_file(digits_checkpoint, tmp_path_factory):
    from volnet.viz.report import write_report

    return write_report(digits_checkpoint, tmp_path_factory.mktemp("report") / "report.html", samples=3,
                        test_limit=300)


@pytest.fixture
def page(browser, report_file):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: errors.append(f"request to {request.url}")
            if not request.url.startswith(("file:", "data:")) else None)
    page.goto(report_file.as_uri())
    page.wait_for_load_state("load")
    page.errors = errors
    yield page
    page.close()


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


@pytest.mark.slow
def test_the_page_loads_offline_with_no_console_errors(page):
    assert page.title().startswith("volnet report")
    assert page.errors == []


@pytest.mark.slow
@pytest.mark.parametrize("section", SECTIONS)
def test_every_section_renders_something(page, section):
    element = page.locator(f"section#{section}")
    element.scroll_into_view_if_needed()
    pixels = _pixels(element.screenshot())
    below_heading = pixels[60:]  # past the heading: the section's own content
    assert below_heading.shape[0] > 40, f"{section} is almost empty"
    assert below_heading.std() > 10, f"{section} is blank"
    colours = len(np.unique(below_heading.reshape(-1, 3), axis=0))
    assert colours > 20, f"{section} shows only {colours} colours"


def test_switching_image_and_layer_updates_the_views(page):
    view, explanation = page.locator("#act-view"), page.locator("img.explanation").first
    first_src, first_explanation = view.get_attribute("src"), explanation.get_attribute("src")
    first_demo = page.locator("#demo-grids").inner_html()
    page.locator(".image-choice").nth(1).click()
    assert view.get_attribute("data-image") == "1"
    assert view.get_attribute("src") != first_src
    assert page.locator("img.explanation").first.get_attribute("src") != first_explanation
    assert page.locator("#demo-grids").inner_html() != first_demo
    before = view.get_attribute("src")
    page.select_option("#layer-select", "3")
    assert view.get_attribute("data-layer") == "3"
    assert view.get_attribute("src") != before
    assert "volume 14x14x8" in page.locator("#act-stats").text_content()
    pixels = _pixels(view.screenshot())
    assert pixels.std() > 5
    assert page.errors == []


@pytest.mark.slow
def test_the_conv_demo_steps_and_its_sum_is_volnets_output(page):
    demo = page.locator("#demo-sum")
    for expected in ("0,0", "0,1", "0,2"):
        assert demo.get_attribute("data-position") == expected
        total, output = float(demo.get_attribute("data-sum")), float(demo.get_attribute("data-output"))
        assert abs(total - output) < 1e-3 * max(1.0, abs(output))
        page.click("#demo-next")
    page.click("#demo-prev")
    assert demo.get_attribute("data-position") == "0,2"
    page.select_option("#demo-layer", "3")  # the second CONV: 6 depth slices summed
    assert demo.get_attribute("data-position") == "0,0"
    assert "6 depth slices" in demo.text_content()
    total, output = float(demo.get_attribute("data-sum")), float(demo.get_attribute("data-output"))
    assert abs(total - output) < 1e-3 * max(1.0, abs(output))
    assert page.errors == []


SUM = re.compile(r"sum of products over (\d+) depth slices?"
                 r"(?: \((\d+) more depth slices? not drawn: (-?\d+\.\d{6})\))? = "
                 r"(-?\d+\.\d{6}), plus bias (-?\d+\.\d{6}) = (-?\d+\.\d{6}); volnet's output: (-?\d+\.\d{6}) "
                 r"\(difference (\S+): ")


def _millionths(text: str) -> int:
    return round(float(text) * 1e6)


@pytest.mark.parametrize("layer", ["0", "3"])
def test_the_conv_demo_adds_up_exactly_to_what_it_shows_at_every_position(page, layer):
    """Issue 21: the page rounded inputs and weights to 4 digits before adding, so its sum disagreed with volnet's
    output in 115 of 200 positions. Every figure of the sentence is now the exact sum of the figures it names."""
    page.select_option("#demo-layer", layer)
    seen = page.evaluate("""() => { const out = [], n = document.querySelectorAll('table.output-slice td').length;
        for (let k = 0; k < n; k++) { const slices = [...document.querySelectorAll('#demo-grids h4')]
              .map(h => h.textContent).filter(t => t.startsWith('products (sum '));
            out.push([document.getElementById('demo-sum').textContent, slices]);
            document.getElementById('demo-next').click(); }
        return out; }""")
    assert len(seen) == (28 * 28 if layer == "0" else 14 * 14)
    for sentence, slices in seen:
        match = SUM.search(sentence)
        assert match, sentence
        depth, _, hidden, total, bias, value, output, difference = match.groups()
        parts = [_millionths(re.search(r"sum (-?\d+\.\d{6})\)", title)[1]) for title in slices]
        assert sum(parts) + (_millionths(hidden) if hidden else 0) == _millionths(total), sentence
        assert _millionths(total) + _millionths(bias) == _millionths(value), sentence
        assert abs(float(value) - float(output)) <= 5e-5, sentence
        assert float(difference) == pytest.approx(float(value) - float(output), abs=2e-6)
    assert page.errors == []
