"""The README is short and shows what a newcomer needs first: how to install, the two make commands, the Python
API. Its ```python blocks run, and its links resolve, in tests/test_docs.py (with those of docs/*.md)."""

import re
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)
PYTHON = [code for language, code in BLOCKS if language == "python"]


def test_the_readme_shows_the_python_api_and_how_to_install():
    """One example that builds a network, trains it and predicts with it."""
    assert any(all(call in code for call in ("Sequential(", ".summary()", "fit(", ".predict(", ".save("))
               for code in PYTHON)
    opening = README.split("## Quick start", 1)[0]
    assert "pip install ." in opening and "pip install '.[train,images,fast,check]'" in opening


def test_quick_start_is_the_two_make_commands():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "```sh\nmake demo\nmake test\n```" in quick_start


def test_the_readme_reads_in_five_minutes():
    """Under 10 KB, as micrograd's and tinygrad's; the details live in docs/."""
    assert len(README.encode()) < 10_000, f"README.md is {len(README.encode()):,} bytes; move details to docs/"


def test_the_readme_shows_no_placeholder_for_the_user_to_fill_in():
    assert not re.search(r"<[a-z ]*(url|repository|path)[a-z ]*>", README, flags=re.I)


def test_the_readme_carries_no_benchmark_figures():
    """Timings belong in docs/performance.md, with the date and machine they were measured on."""
    assert not re.search(r"\d ?(ms|us)\b|GFLOP/s|images/s\b", README)
