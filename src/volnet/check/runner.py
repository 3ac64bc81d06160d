"""The child process of ``volnet check``: imports the learner's file and checks its functions one at a time.

Run as ``python -m volnet.check.runner FILE CASES BUDGET API [NAME ...]``
(API: ``assignment``, ``volnet`` or ``auto``). It writes one JSON object per
line to its standard output (the learner's own prints go to standard
error): ``names`` (the API and the recognised functions found),
then per function ``start``, a ``case`` before every call (so that the
parent can name the configuration a hung call was given) and ``result``.
An error while importing the file is one ``import_error`` line.

Hypothesis searches each function's configurations (:mod:`.cases`) for one
that fails, then shrinks it; a function is given BUDGET seconds of search.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, find, settings
from hypothesis.errors import HypothesisException, NoSuchExample

from . import cases, functions, hints, reference
from .functions import Spec


class _OutOfTime(Exception):
    """The function's search budget is spent."""


def main(argv: list[str]) -> int:
    path, count, budget, api, *names = argv
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # print() in the learner's code must not corrupt the protocol
    sys.stdout = sys.stderr

    def emit(**message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    try:
        module = load(Path(path))
    except BaseException as error:  # noqa: BLE001 -- SystemExit in their file too; the parent reports it
        emit(event="import_error", message=f"importing {path} failed: {learner_error(error, path)}")
        return 0
    api = functions.detect(module) if api == "auto" else api
    specs = functions.APIS[api]
    found = {name: getattr(module, name) for name in specs if callable(getattr(module, name, None))}
    todo = [name for name in (names or specs) if name in found]
    emit(event="names", api=api, names=todo)
    for name in todo:
        emit(event="start", name=name)
        emit(event="result", **check_function(specs[name], found, int(count), float(budget), path, emit))
    return 0


def load(path: Path):
    """Import the learner's file as a module named after it, with its folder first on the path (as ``python FILE``)."""
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def learner_error(error: BaseException, path) -> str:
    """``Type: message (file.py:line, in function: source line)`` at the deepest line of the learner's file."""
    text = f"{type(error).__name__}: {error}"
    mine = [frame for frame in traceback.extract_tb(error.__traceback__) if _same_file(frame.filename, path)]
    if isinstance(error, SyntaxError):  # in a module their file imports (the parent compiled the file itself)
        return f"{text} ({error.filename}:{error.lineno})"
    if mine:
        frame = mine[-1]
        text += f" ({Path(frame.filename).name}:{frame.lineno}, in {frame.name}: {(frame.line or '').strip()})"
    return text


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_function(spec: Spec, found: dict, count: int, budget: float, path, emit) -> dict:
    """Search for the smallest failing configuration; the function's report entry as a dict."""
    if spec.forward and spec.forward not in found:
        return dict(name=spec.name, passed=False, cases=0, failure=_bare_failure(
            None, f"{spec.name} takes the cache that {spec.forward} returns, and the file defines no {spec.forward}"))
    deadline = time.monotonic() + budget
    state = {"cases": 0, "key": None, "best": None}

    def fails(config: dict) -> bool:
        if time.monotonic() > deadline:
            raise _OutOfTime
        emit(event="case", config=config)
        state["cases"] += 1
        outcome = evaluate(spec, found, config, path)
        if outcome is None:
            return False
        key = outcome[0]
        state["key"] = state["key"] or key
        if key != state["key"]:  # shrink towards the same mistake, not another one
            return False
        if state["best"] is None or cases.size(config) <= cases.size(state["best"][1]):
            state["best"] = (outcome, config)
        return True

    try:
        find(cases.STRATEGIES[spec.family], fails, random=random.Random(0), settings=settings(
            max_examples=count, database=None, deadline=None, phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet))
    except (NoSuchExample, _OutOfTime):
        pass
    except HypothesisException:  # e.g. a function whose result changes between calls: keep what was found
        pass
    if state["best"] is None:
        return dict(name=spec.name, passed=True, cases=state["cases"], failure=None)
    (_, failure, got, inputs), config = state["best"]
    return dict(name=spec.name, passed=False, cases=state["cases"],
                failure=_explain(spec, config, inputs, failure, got))


def evaluate(spec: Spec, found: dict, config: dict, path):
    """None if the learner's function is right on this configuration, else ``(key, failure, got, inputs)``."""
    inputs = functions.with_dout(spec, config, cases.arrays(spec.family, config))
    try:
        got = functions.call(spec, found, config, inputs)
    except functions.ReturnError as error:
        return ("return",), _bare_failure(None, str(error)), None, inputs
    except Exception as error:  # noqa: BLE001 -- their code's error is the finding
        message = "raised " + learner_error(error, path)
        return ("raised", type(error).__name__), _bare_failure(None, message), None, inputs
    want = functions.expected(spec.family, config, inputs)
    for quantity in spec.quantities:
        failure = functions.compare(quantity, got[quantity], functions.to_learner(spec, quantity, want[quantity]))
        if failure is not None:
            return (quantity,), failure, got[quantity], inputs
    return None


def _bare_failure(quantity, message: str) -> dict:
    return dict(quantity=quantity, index=None, expected=None, got=None, max_abs_error=None, message=message)


def _explain(spec: Spec, config: dict, inputs: dict, failure: dict, got) -> dict:
    """The failure with its configuration, the hint of a known mistake, the notes' formula and a float64 witness."""
    q = failure["quantity"]
    hint = None
    if q:
        hint = hints.diagnose(spec.family, config, inputs, q, functions.to_learner(spec, q, got, back=True))
    return {"config": functions.shown(spec, config), **failure, "hint": hint,
            "formula": functions.formula(spec, q) if q else None,
            "witness": _centred_differences(spec, config, inputs, q) if q else None}


def _centred_differences(spec: Spec, config: dict, inputs: dict, q: str) -> float | None:
    """Largest gap between volnet's gradient q and centred differences of volnet's forward, or None for values."""
    name = {"dx": "x", "dw": "w", "db": "b"}.get(q)
    if name is None:
        return None
    plain = {key: value for key, value in inputs.items() if key != "dout"}
    numeric = reference.numerical(lambda **given: functions.expected(spec.family, config, given), plain, name,
                                  inputs.get("dout"))
    return float(abs(numeric - functions.expected(spec.family, config, inputs)[q]).max())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
