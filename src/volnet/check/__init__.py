"""Check a learner's own layer functions against volnet's kernels: ``volnet check FILE.py``.

``volnet.check(path_or_module)`` (this module is callable) runs the file, as
``python FILE.py`` would import it, in a child process: the learner's code
never enters this process, and a call that hangs is stopped there and
reported. Every function it recognises by name (:data:`NAMES`, the
assignment's NCHW API, or :data:`VOLNET_NAMES`, volnet.ops's own NHWC
signatures; see :mod:`.functions`) is tried on random
configurations (:mod:`.cases`) against volnet's reference kernels
(:mod:`.reference`); the smallest failing configuration Hypothesis finds is
reported with the quantity, index, expected and got values, the notes'
formula and a hint when the mistake is a known one (:mod:`.hints`).

>>> report = volnet.check("layers.py")       # doctest: +SKIP
>>> report.passed, report.functions[0].cases  # doctest: +SKIP
(True, 100)
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

from .functions import APIS, NAMES, VOLNET_NAMES, shown
from .report import CheckReport, FunctionResult

# Configurations tried per function, and seconds per function: the search stops after half of them,
# a call still running at the limit is stopped and reported.
CASES = 100
TIME_LIMIT = 20.0


class CheckUsageError(ValueError):
    """The file cannot be checked: missing, a syntax error, an error on import, or none of the names (exit 2)."""


def check(path_or_module, *, cases: int = CASES, time_limit: float = TIME_LIMIT, api: str = "auto") -> CheckReport:
    """Check every recognised function of a learner's file (a path, or a module loaded from a file).

    ``api``: ``"assignment"`` (the assignment's NCHW functions), ``"volnet"``
    (volnet.ops's NHWC signatures) or ``"auto"`` (volnet's when the file
    defines a name only it has, see :func:`.functions.detect`).

    Raises CheckUsageError when the file cannot be checked, ImportError when Hypothesis is missing.
    """
    if api not in ("auto", *APIS):
        raise ValueError(f"api must be 'auto', 'assignment' or 'volnet', got {api!r}")
    file = str(getattr(path_or_module, "__file__", path_or_module))
    path = _source(path_or_module)
    if importlib.util.find_spec("hypothesis") is None:
        raise ImportError("volnet check needs hypothesis: pip install hypothesis (or pip install '.[check]')")
    results: dict[str, FunctionResult] = {}
    chosen, found = _run_child(path, cases, time_limit, api, [], results)
    if not found:
        known = {"assignment": ", ".join(NAMES), "volnet": f"in volnet's API {', '.join(VOLNET_NAMES)}"}
        looked = [known[api]] if api in known else [known["assignment"], f"or, {known['volnet']}"]
        raise CheckUsageError(f"{file} defines none of the functions volnet check knows: {'; '.join(looked)}")
    while missing := [name for name in found if name not in results]:
        before = len(results)
        _run_child(path, cases, time_limit, chosen, missing, results)
        if len(results) == before:  # the child died before reaching a function: do not try forever
            for name in missing:
                results[name] = FunctionResult(name, False, 0, _failure(None, "the checking process ended before "
                                                                                 "reaching this function"))
    return CheckReport(file, [results[name] for name in found], chosen)


def _source(path_or_module) -> Path:
    """The learner's file, compiled (not run) here so that a syntax error is named with its line."""
    if isinstance(path_or_module, types.ModuleType):
        if getattr(path_or_module, "__file__", None) is None:
            raise CheckUsageError(f"module {path_or_module.__name__} was not loaded from a file; pass its path")
        path_or_module = path_or_module.__file__
    path = Path(path_or_module)
    if not path.is_file():
        raise CheckUsageError(f"{path}: no such file")
    try:
        compile(path.read_bytes(), str(path), "exec")
    except SyntaxError as error:
        raise CheckUsageError(f"{path}:{error.lineno}: syntax error: {error.msg}") from None
    except ValueError as error:  # null bytes
        raise CheckUsageError(f"{path}: not Python source ({error})") from None
    return path.resolve()


def _run_child(path: Path, cases: int, time_limit: float, api: str, names: list[str], results: dict):
    """One child process over ``names`` (all when empty), filling ``results``; the API and names it found."""
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryDirectory() as scratch:
        # volnet first on the path; Hypothesis's cache in a folder of ours, not a .hypothesis/ in their folder
        env = dict(os.environ, HYPOTHESIS_STORAGE_DIRECTORY=scratch, PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), *filter(None, [os.environ.get("PYTHONPATH")])]))
        child = subprocess.Popen(
            [sys.executable, "-m", "volnet.check.runner", str(path), str(cases), str(time_limit / 2), api, *names],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [*map(lines.put, child.stdout), lines.put(None)], daemon=True).start()
        try:
            return _follow(lines, path, time_limit, results, child, errors)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()


def _follow(lines, path, time_limit, results, child, errors):
    api, found, current, config, tried, started = None, None, None, None, 0, time.monotonic()
    while True:
        try:
            line = lines.get(timeout=max(0.0, started + time_limit - time.monotonic()))
        except queue.Empty:
            if current is None:
                raise CheckUsageError(f"importing {path} did not finish within {time_limit:g} s") from None
            results[current] = FunctionResult(current, False, tried, _failure(
                config, f"{current} did not return within {time_limit:g} s on this configuration "
                        "(an endless loop?), so it was stopped"))
            return api, found
        if line is None:
            child.wait()
            if found is None:
                raise CheckUsageError(f"importing {path} ended the process (exit code {child.returncode})"
                                      f"{_tail(errors)}")
            if current is not None:
                results[current] = FunctionResult(current, False, tried, _failure(
                    config, f"the process checking {current} ended (exit code {child.returncode}){_tail(errors)}"))
            return api, found
        message = json.loads(line)
        event = message.pop("event")
        if event == "import_error":
            raise CheckUsageError(message["message"])
        if event == "names":
            api, found, started = message["api"], message["names"], time.monotonic()
        elif event == "start":
            current, config, tried, started = message["name"], None, 0, time.monotonic()
        elif event == "case":
            tried += 1
            config = shown(APIS[api][current], message["config"])
        elif event == "result":
            results[current] = FunctionResult(**message)
            current, started = None, time.monotonic()


def _failure(config, message: str) -> dict:
    return dict(config=config, quantity=None, index=None, expected=None, got=None, max_abs_error=None, hint=None,
                message=message)


def _tail(errors) -> str:
    errors.seek(0)
    text = errors.read().decode(errors="replace").strip().splitlines()
    return f": {text[-1]}" if text else ""


class _CallableModule(types.ModuleType):
    """``volnet.check`` is this package; calling it calls :func:`check`, as the issue's ``volnet.check(path)``."""

    def __call__(self, path_or_module, **options) -> CheckReport:
        return check(path_or_module, **options)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["CASES", "NAMES", "VOLNET_NAMES", "TIME_LIMIT", "CheckReport", "CheckUsageError", "FunctionResult", "check"]
