"""SpecError: a spec that cannot be read, shown with a caret under the spot."""

from __future__ import annotations


class SpecError(ValueError):
    """A notation string that does not parse, or a value it needs that is missing.

    The message names the place and what was expected there, then repeats
    the line of the spec with a caret under the offending character::

        expected '->' or end of spec, found 'FC' at column 20
          INPUT -> CONV3-64 FC10
                            ^

    Attributes:
        reason: what went wrong, without the place.
        text: the spec (None when the problem is in an argument, e.g. ``input=``).
        position: 0-based offset of the offending character in ``text``, or None.
        line, column: 1-based line and column of ``position`` (None without one).
        hint: a suggestion (``did you mean 'CONV'?``), or None.
    """

    def __init__(self, reason: str, text: str | None = None, position: int | None = None,
                 hint: str | None = None):
        self.reason, self.text, self.position, self.hint = reason, text, position, hint
        self.line = self.column = None
        if text is not None and position is not None:
            before = text[:position]
            self.line = before.count("\n") + 1
            self.column = position - (before.rfind("\n") + 1) + 1
        super().__init__(self._format())

    def _format(self) -> str:
        hint = f"; {self.hint}" if self.hint else ""
        if self.column is None:
            return f"{self.reason}{hint}"
        where = f"line {self.line}, column {self.column}" if "\n" in self.text else f"column {self.column}"
        source = self.text.split("\n")[self.line - 1]
        # keep tabs so the caret lines up under a tab-indented spec
        margin = "".join(c if c == "\t" else " " for c in source[: self.column - 1])
        return f"{self.reason} at {where}{hint}\n  {source}\n  {margin}^"
