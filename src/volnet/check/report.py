"""What ``volnet check`` found: one entry per recognised function, as text, JSON or an HTML table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from ..display import html_table

_API = {"assignment": "", "volnet": " (volnet's own kernel signatures, NHWC)"}
# The keys of a failure in --json, in order (the schema).
FAILURE_KEYS = ("config", "quantity", "index", "expected", "got", "max_abs_error", "hint", "message")


@dataclass(frozen=True)
class FunctionResult:
    """One function: passed or not, the cases tried, and the smallest failure found.

    ``failure`` holds :data:`FAILURE_KEYS` plus ``formula`` (the notes' formula
    for the quantity) and ``witness`` (how close volnet's expected gradient is
    to float64 centred differences), both None where they do not apply.
    """

    name: str
    passed: bool
    cases: int
    failure: dict | None = None

    def message(self) -> str:
        """The failure in one paragraph: what differs, the notes' formula, the float64 witness."""
        f = self.failure
        text = f["message"]
        if f.get("formula"):
            text += f". The notes: {f['formula']}"
        if f.get("witness") is not None:
            text += f". volnet's {f['quantity']} agrees with float64 centred differences to {f['witness']:.1e}"
        return text


@dataclass(frozen=True)
class CheckReport:
    """The report of one file; ``passed`` when every recognised function passed."""

    file: str
    functions: list[FunctionResult] = field(default_factory=list)
    api: str = "assignment"  # whose signatures the file's functions were checked with

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.functions)

    def to_dict(self) -> dict:
        """``{"file", "functions": [{"name", "passed", "cases", "failure": None or {FAILURE_KEYS}}]}``."""
        entries = []
        for result in self.functions:
            failure = None
            if result.failure is not None:
                failure = {key: result.failure.get(key) for key in FAILURE_KEYS}
                failure["message"] = result.message()
            entries.append({"name": result.name, "passed": result.passed, "cases": result.cases, "failure": failure})
        return {"file": self.file, "functions": entries}

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2)

    def text(self) -> str:
        """The terminal report: a line per function, the failures spelled out under theirs."""
        width = max(len(result.name) for result in self.functions)
        failed = sum(not result.passed for result in self.functions)
        lines = [f"volnet check {self.file}: {len(self.functions) - failed} of {len(self.functions)} functions pass"
                 f"{_API[self.api]}"]
        for result in self.functions:
            if result.passed:
                lines.append(f"  ok    {result.name:<{width}}  {result.cases} random cases")
                continue
            lines.append(f"  FAIL  {result.name:<{width}}  after {result.cases} case{'s' * (result.cases != 1)}")
            lines += [f"        {line}" for line in _failure_lines(result.failure)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        """For notebooks: a row per function, the failure's lines in its details."""
        rows = [(result.name, "ok" if result.passed else "FAIL",
                 f"{result.cases} random cases" if result.passed else "\n".join(_failure_lines(result.failure)))
                for result in self.functions]
        failed = sum(not result.passed for result in self.functions)
        return html_table(("function", "result", "details"), rows,
                          title=f"volnet check {self.file}: {len(rows) - failed} of {len(rows)} functions pass"
                                f"{_API[self.api]}")


def _failure_lines(f: dict) -> list[str]:
    lines = []
    if f.get("config"):
        lines.append("smallest failing configuration: " + ", ".join(f"{k}={v}" for k, v in f["config"].items()))
    lines.append(f["message"])
    if f.get("max_abs_error") is not None:
        lines.append(f"largest error: {f['max_abs_error']:.3g}")
    if f.get("formula"):
        lines.append(f"the notes: {f['formula']}")
    if f.get("hint"):
        lines.append(f"hint: {f['hint']}")
    if f.get("witness") is not None:
        lines.append(f"(volnet's {f['quantity']} agrees with float64 centred differences to {f['witness']:.1e})")
    return lines


def _finite(value):
    """NaN and infinity as strings: JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
