"""Cut a spec into tokens: arrows, brackets, numbers, HxW sizes and words."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SpecError

PUNCTUATION = "[]{}()*?|,=/-"

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<arrow>->)
  | (?P<dims>\d+(?:[xX]\d+)+)                                   # 32x32x3, 3x5
  | (?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)? | \d+[eE][+-]?\d+)
  | (?P<int>\d+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)                            # CONV3, FC4096, N, S2
  | (?P<punct>[][{}()*?|,=/-])
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    """``kind`` is "->", one punctuation character, "int", "float", "dims", "word" or "end"."""

    kind: str
    text: str
    pos: int  # 0-based offset in the spec

    @property
    def value(self):
        if self.kind == "int":
            return int(self.text)
        if self.kind == "float":
            return float(self.text)
        if self.kind == "dims":
            return tuple(int(d) for d in re.split("[xX]", self.text))
        return self.text

    def describe(self) -> str:
        return "end of spec" if self.kind == "end" else repr(self.text)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an "end" token; SpecError on a stray character."""
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SpecError(f"unexpected character {text[pos]!r}", text, pos,
                            "a spec holds layer names, numbers, '->' and " + " ".join(PUNCTUATION))
        kind = match.lastgroup
        if kind != "space":
            tokens.append(Token(match.group() if kind in ("arrow", "punct") else kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens
