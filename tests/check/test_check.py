"""volnet.check end to end on learners' files (tests/check/learners/): no false alarm on correct code, every
known mistake caught, shrunk and named, and misbehaving functions reported without hanging or a traceback."""

import json
import types
from pathlib import Path

import pytest

import volnet
from volnet.check import CheckUsageError, check, hints
from volnet.check.functions import NAMES
from volnet.check.report import FAILURE_KEYS
from volnet.cli import build_parser, main

LEARNERS = Path(__file__).parent / "learners"


@pytest.fixture(scope="module")
def correct():
    return check(LEARNERS / "correct.py")


@pytest.mark.slow
def test_correct_implementations_pass_every_function_on_every_case(correct):
    assert [result.name for result in correct.functions] == list(NAMES)
    assert all(result.passed and result.failure is None and result.cases == 100 for result in correct.functions)
    assert correct.passed
    assert "14 of 14 functions pass" in correct.text()


# file, function, quantity, hint, what the shrunk configuration must be
MISTAKES = [
    ("pool_overlap.py", "max_pool_backward_naive", "dx", hints.OVERLAP,
     dict(x_shape=[1, 1, 3, 1], pool_height=2, pool_width=1, stride=1)),
    ("batch_sum.py", "conv_backward_naive", "dw", hints.BATCH_SUM.format(q="dw", what="filters"),
     dict(x_shape=[2, 1, 1, 1], w_shape=[1, 1, 1, 1], stride=1, pad=0)),
    ("batch_sum.py", "affine_backward", "db", hints.BATCH_SUM.format(q="db", what="weights"),
     dict(x_shape=[1, 1], w_shape=[1, 1])),
    ("stride_ignored.py", "conv_forward_naive", "out", hints.STRIDE,
     dict(x_shape=[1, 1, 1, 3], w_shape=[1, 1, 1, 1], stride=2, pad=0)),
    ("flipped.py", "conv_forward_naive", "out", hints.FLIPPED,
     dict(x_shape=[1, 1, 1, 2], w_shape=[1, 1, 1, 2], stride=1, pad=0)),
    ("crop.py", "conv_backward_naive", "dx", hints.CROP,
     dict(x_shape=[1, 1, 1, 1], w_shape=[1, 1, 1, 1], stride=1, pad=1)),
    ("crop_empty.py", "conv_backward_naive", "dx", hints.CROP_EMPTY,
     dict(x_shape=[1, 1, 1, 1], w_shape=[1, 1, 1, 1], stride=1, pad=0)),
    ("loss_not_divided.py", "softmax_loss", "dx", hints.PER_N.format(q="dx"), dict(x_shape=[2, 2])),
]


@pytest.mark.parametrize(("file", "name", "quantity", "hint", "smallest"), MISTAKES,
                         ids=[f"{m[0]}:{m[1]}" for m in MISTAKES])
@pytest.mark.slow
def test_each_known_mistake_is_caught_shrunk_and_named(file, name, quantity, hint, smallest):
    report = check(LEARNERS / file)
    result = next(result for result in report.functions if result.name == name)
    assert not result.passed and not report.passed
    failure = result.failure
    assert failure["quantity"] == quantity and failure["hint"] == hint
    assert failure["config"] == smallest  # Hypothesis's shrinking, in the assignment's names (no seed)
    assert failure["formula"]  # the notes' formula; a gradient on volnet's side is checked in float64 too
    assert failure["witness"] < 1e-6 if quantity[0] == "d" else failure["witness"] is None
    if failure["index"] is not None:  # a wrong value: where, and by how much
        assert failure["max_abs_error"] == pytest.approx(abs(failure["expected"] - failure["got"]))
        assert failure["max_abs_error"] > 1e-6
    assert f"hint: {hint}" in report.text()


@pytest.mark.slow
def test_functions_that_raise_return_the_wrong_form_or_hang_are_reported_and_the_rest_still_checked():
    report = check(LEARNERS / "misbehaving.py", time_limit=3)
    results = {result.name: result for result in report.functions}
    assert list(results) == ["affine_forward", "affine_backward", "relu_forward", "relu_backward", "svm_loss"]
    shape = results["affine_forward"].failure
    assert (shape["quantity"], shape["expected"], shape["got"]) == ("out", [1, 2], [2, 1])
    assert shape["message"].startswith("out has shape (2, 1), expected (1, 2)")
    hung = results["affine_backward"].failure
    assert "did not return within 3 s" in hung["message"] and hung["config"] == dict(x_shape=[1, 1], w_shape=[1, 1])
    assert results["relu_forward"].passed  # checked by a fresh process after the hung one was stopped
    raised = results["relu_backward"].failure
    assert raised["message"] == ('raised ValueError: mask not written yet (misbehaving.py:7, in _mask: '
                                 'raise ValueError("mask not written yet"))')
    assert raised["config"] == dict(x_shape=[1, 1])
    assert results["svm_loss"].failure["message"] == "svm_loss should return (loss, dx), got float"
    assert "Traceback" not in report.text() and "volnet/" not in report.text()


def test_a_backward_without_its_forward_is_reported(tmp_path):
    learner = tmp_path / "only_backward.py"
    learner.write_text("def relu_backward(dout, cache):\n    return dout * (cache > 0)\n")
    (result,) = check(learner).functions
    assert not result.passed and result.cases == 0
    assert "takes the cache that relu_forward returns" in result.failure["message"]


@pytest.mark.parametrize(("source", "error"), [
    ("def relu_forward(x:\n", r"bad\.py:1: syntax error"),
    ("x = 1\n", "defines none of the functions volnet check knows: affine_forward, affine_backward, relu_forward"),
    ("import numpy\n\nnumpy.zeros(-1)\n", r"importing .*bad\.py failed: ValueError: .*\(bad\.py:3, in <module>"),
    ("while True:\n    pass\n", r"importing .*bad\.py did not finish within 1 s"),
])
def test_files_that_cannot_be_checked_are_usage_errors(tmp_path, source, error):
    learner = tmp_path / "bad.py"
    learner.write_text(source)
    with pytest.raises(CheckUsageError, match=error):
        check(learner, time_limit=1)
    with pytest.raises(CheckUsageError, match="no such file"):
        check(tmp_path / "missing.py")


@pytest.mark.slow
def test_a_module_is_checked_through_its_file_and_volnet_check_is_callable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    learner = tmp_path / "mine.py"
    learner.write_text("import numpy as np\n\ndef relu_forward(x):\n    return np.maximum(x, 0), x\n")
    module = types.ModuleType("mine")
    module.__file__ = str(learner)
    report = volnet.check(module, cases=5)
    assert report.passed and report.functions[0].cases == 5
    assert report.to_dict() == check(learner, cases=5).to_dict()  # derandomized: the same cases every run
    with pytest.raises(CheckUsageError, match="not loaded from a file"):
        volnet.check(types.ModuleType("typed_in_a_notebook"))
    assert not (tmp_path / ".hypothesis").exists()  # Hypothesis's cache is not left in their folder


@pytest.mark.slow
def test_the_html_table_shows_each_function_and_escapes_messages():
    report = check(LEARNERS / "misbehaving.py", time_limit=3, cases=10)
    page = report._repr_html_()
    assert page.count("<tr>") == 1 + len(report.functions)
    assert ">relu_backward</td>" in page and ">FAIL</td>" in page and "1 of 5 functions pass" in page
    assert "raise ValueError(&quot;mask not written yet&quot;)" in page  # escaped, not markup
    assert "smallest failing configuration: x_shape=[1, 1]\nraised ValueError" in page  # one line each


@pytest.mark.slow
def test_cli_exit_codes_and_json_schema(capsys, tmp_path):
    assert main(["check", str(LEARNERS / "loss_not_divided.py"), "--json", "--cases", "30"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert list(document) == ["file", "functions"]
    (entry,) = document["functions"]
    assert list(entry) == ["name", "passed", "cases", "failure"]
    assert list(entry["failure"]) == list(FAILURE_KEYS)
    assert entry["failure"]["config"] == {"x_shape": [2, 2]}
    assert "The notes: dx[n] = (softmax(x[n]) - onehot(y[n])) / N" in entry["failure"]["message"]
    learner = tmp_path / "fine.py"
    learner.write_text("import numpy as np\n\ndef relu_forward(x):\n    return np.maximum(x, 0), x\n")
    assert main(["check", str(learner)]) == 0
    assert "1 of 1 functions pass" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "missing.py")]) == 2
    assert "volnet check: error:" in capsys.readouterr().err


@pytest.mark.slow
def test_volnets_own_kernel_signatures_are_checked_in_their_layout_and_names():
    report = check(LEARNERS / "volnet_api.py")  # volnet.ops itself: no false alarm through the NHWC adapter
    assert report.api == "volnet" and report.passed
    assert [result.name for result in report.functions] == list(volnet.check.VOLNET_NAMES)
    assert "NHWC" in report.text()
    (forward, backward) = check(LEARNERS / "volnet_api_overlap.py").functions
    assert forward.passed and not backward.passed
    failure = backward.failure
    assert failure["config"] == dict(x_shape=[1, 3, 1, 1], F=[2, 1], S=1)  # NHWC, volnet's letters
    assert failure["index"] == [0, 1, 0, 0] and failure["hint"] == hints.OVERLAP
    assert failure["formula"].startswith("dx[n, where window (i, j) had its max, d] +=")


@pytest.mark.slow
def test_the_api_is_detected_from_a_signature_or_chosen(tmp_path):
    learner = tmp_path / "mine.py"
    learner.write_text("from volnet.ops import conv_forward_naive as naive\n\n"
                       "def conv_forward_naive(x, w, b, stride=1, pad=0):\n    return naive(x, w, b, stride, pad)\n")
    assert check(learner, cases=10).api == "volnet"
    assert not check(learner, cases=10, api="assignment").passed  # called with a conv_param dict: it fails
    with pytest.raises(CheckUsageError, match="in volnet's API fc_forward"):
        check(LEARNERS / "loss_not_divided.py", api="volnet")


def test_cli_defaults_are_the_library_defaults():
    args = build_parser().parse_args(["check", "x.py"])
    assert (args.cases, args.time_limit) == (volnet.check.CASES, volnet.check.TIME_LIMIT)
