"""The Markdown pages (README.md and docs/*.md): each ```python block runs on its own, as written, and prints
what the page shows after it; every relative link points at a file (and heading) that exists."""

import contextlib
import io
import re
from pathlib import Path

import pytest

from volnet import ShapeError
from volnet.cli import main

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(page: Path) -> list[tuple[str, str]]:
    """``[(language, code)]`` for every fenced block of ``page``, in order."""
    return re.findall(r"```(\w*)\n(.*?)```", page.read_text(), flags=re.S)


PYTHON = [(page, index) for page in PAGES for index, (language, _) in enumerate(blocks(page)) if language == "python"]


def _normalise(text):
    return " ".join(text.split())


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """A folder holding ``runs/demo/checkpoint.safetensors``, which the README's ``volnet.load`` block reads.

    ``make demo`` writes it with 8 epochs of LeNet; one epoch of a smaller net
    stands in for it here, as the block's shown output (shapes and class
    names) does not depend on the architecture or the weights.
    """
    folder = tmp_path_factory.mktemp("docs")
    code = main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC", "--epochs", "1",
                 "--out", str(folder / "runs" / "demo")])
    assert code == 0
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(("page", "index"), PYTHON, ids=[f"{_name(p)}:block{i}" for p, i in PYTHON])
def test_python_block_runs_on_its_own_and_matches_its_shown_output(page, index, request, tmp_path, monkeypatch):
    """A block ending in ``# ShapeError: ...`` must raise that error; a plain block right after one that
    prints shows exactly what it prints. Blocks run in an empty folder, or in one with the demo's checkpoint
    where they read ``runs/demo``."""
    from volnet.layers import LAYER_TYPES

    # a layer class a page defines (docs/architecture.md's example) must not stay registered for other tests
    registered = dict(LAYER_TYPES)
    request.addfinalizer(lambda: (LAYER_TYPES.clear(), LAYER_TYPES.update(registered)))
    page_blocks = blocks(page)
    code = page_blocks[index][1]
    monkeypatch.chdir(request.getfixturevalue("demo_folder") if "runs/demo" in code else tmp_path)
    namespace = {}  # fresh: a block must import what it uses
    expected_error = re.search(r"# ShapeError: (.*)", code, flags=re.S)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        if expected_error:
            with pytest.raises(ShapeError) as info:
                exec(code, namespace)
            shown = _normalise(expected_error.group(1).replace("#", ""))
            assert _normalise(str(info.value)) == shown
        else:
            exec(code, namespace)
    following = page_blocks[index + 1] if index + 1 < len(page_blocks) else None
    if following is not None and following[0] == "" and stdout.getvalue():
        assert stdout.getvalue().strip() == following[1].strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a "# comment" in a block is no heading
    return {slug(heading) for heading in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def links(page: Path) -> list[str]:
    """The relative targets of ``[text](target)`` links outside code blocks and spans."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", target)]


def test_slug_follows_github():
    assert slug("Memory: `benchmarks/bench_memory.py`") == "memory-benchmarksbench_memorypy"
    assert slug("History: what issue 6 changed, and what each change bought") == \
        "history-what-issue-6-changed-and-what-each-change-bought"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved.relative_to(ROOT.resolve()) if resolved.is_relative_to(ROOT.resolve()) else resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{_name(page)}: " + "; ".join(broken)


def test_every_docs_page_is_reachable_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    assert {page.resolve() for page in PAGES[1:]} <= linked
