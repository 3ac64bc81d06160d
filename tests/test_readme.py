"""The README's Python examples run, each on its own as written, and print what the README says they print."""

import contextlib
import io
import re
from pathlib import Path

import pytest

from volnet import ShapeError
from volnet.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)
PYTHON = [index for index, (language, _) in enumerate(BLOCKS) if language == "python"]


def _normalise(text):
    return " ".join(text.split())


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """A folder holding ``runs/demo/checkpoint.safetensors``, which the README's ``volnet.load`` block reads.

    ``make demo`` writes it with 8 epochs of LeNet; one epoch of a smaller net
    stands in for it here, as the block's shown output (shapes and class
    names) does not depend on the architecture or the weights.
    """
    folder = tmp_path_factory.mktemp("readme")
    code = main(["train", "--arch", "INPUT -> CONV3-4 -> RELU -> POOL2 -> FC", "--epochs", "1",
                 "--out", str(folder / "runs" / "demo")])
    assert code == 0
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("index", PYTHON, ids=lambda i: f"block{PYTHON.index(i) + 1}")
def test_readme_python_block_runs_on_its_own_and_matches_its_shown_output(index, demo_folder, monkeypatch):
    code = BLOCKS[index][1]
    monkeypatch.chdir(demo_folder)
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
    following = BLOCKS[index + 1] if index + 1 < len(BLOCKS) else None
    if following is not None and following[0] == "" and stdout.getvalue():
        assert stdout.getvalue().strip() == following[1].strip()


def test_the_readme_shows_the_python_api_and_how_to_install():
    assert len(PYTHON) >= 6
    assert any("volnet.load(" in BLOCKS[i][1] and ".predict(" in BLOCKS[i][1] and ".save(" in BLOCKS[i][1]
               for i in PYTHON)
    opening = README.split("## Quick start", 1)[0]
    assert "pip install ." in opening and "pip install '.[train,images,fast]'" in opening


def test_quick_start_is_the_two_make_commands():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "```sh\nmake demo\nmake test\n```" in quick_start
