"""The README's Python examples run, and print what the README says they print."""

import contextlib
import io
import re
from pathlib import Path

import pytest

from volnet import ShapeError

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def _normalise(text):
    return " ".join(text.split())


@pytest.mark.slow
def test_readme_python_blocks_run_and_match_their_shown_output():
    namespace = {}
    for index, (language, code) in enumerate(BLOCKS):
        if language != "python":
            continue
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


def test_quick_start_is_the_two_make_commands():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "```sh\nmake demo\nmake test\n```" in quick_start
