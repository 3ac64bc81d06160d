"""Recursive-descent parser: spec text -> a small syntax tree.

The tree keeps every argument as the token it was written as (a number, an
HxW size, or a letter such as N), so that the builder can resolve letters,
fill defaults and point at the exact column of any value it rejects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SpecError
from .keywords import ARGS, INPUT, KEYWORDS, MODIFIERS, Kind, closest_arg, closest_keyword, is_literal_word
from .lexer import Token, tokenize

MAX_DEPTH = 100  # nested [ ], { }, '*' and '?' (what the builder recurses through)

_NUMBERS = r"\d+(?:[xX]\d+)*"  # digits glued to a keyword or a modifier: 3, 3x5
_CLOSERS = {"end": "end of spec", "]": "']'", "|": "'|'", "}": "'}'"}


@dataclass
class LayerNode:
    """One layer keyword with the arguments written for it (name -> token)."""

    kind: Kind
    pos: int
    args: dict[str, Token]
    branches: list[list] = field(default_factory=list)  # RES{ body | shortcut }, CONCAT{ b1 | b2 }
    height: int = 1  # levels of nodes from here down, for the nesting limit


@dataclass
class Group:
    """``[ a -> b ]``."""

    chain: list
    pos: int
    height: int = 1


@dataclass
class Repeat:
    """``element*N``: ``count`` is an int token or a letter."""

    node: object
    count: Token
    pos: int
    height: int = 1


@dataclass
class Optional:
    """``element?``: present unless the builder is told ``optional=False``."""

    node: object
    pos: int
    height: int = 1


@dataclass
class Spec:
    """A parsed spec: the INPUT volume as written (or None), the chain, and the letters it uses."""

    text: str
    input: Token | None  # the HxWxD token of INPUT[...]
    input_pos: int | None  # where INPUT is written; None when the spec starts with a layer
    chain: list
    letters: dict[str, int]  # letter -> position of its first use


def parse(text: str) -> Spec:
    """Parse a spec into a :class:`Spec`; raises :class:`SpecError` with the column on bad syntax."""
    if not isinstance(text, str):
        raise SpecError(f"a spec is a string, got {type(text).__name__}")
    return _Parser(text).spec()


def split_keyword(word: str) -> tuple[Kind | None, str]:
    """``"CONV3"`` -> (CONV, "3"); ``"L2POOL2"`` -> (L2POOL, "2"); (None, "") when no keyword fits."""
    upper = word.upper()
    for spelling in sorted(KEYWORDS, key=len, reverse=True):
        rest = word[len(spelling):]
        if upper.startswith(spelling) and re.fullmatch(f"(?:{_NUMBERS})?", rest):
            return KEYWORDS[spelling], rest
    return None, ""


def _number_token(digits: str, pos: int) -> Token:
    return Token("dims" if "x" in digits.lower() else "int", digits, pos)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.letters: dict[str, int] = {}

    # -- helpers ---------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def error(self, token: Token, reason: str, hint: str | None = None) -> SpecError:
        return SpecError(reason, self.text, token.pos, hint)

    def expected(self, what: str, hint: str | None = None) -> SpecError:
        token = self.peek()
        return self.error(token, f"expected {what}, found {token.describe()}", hint)

    def expect(self, kind: str, what: str) -> Token:
        if self.peek().kind != kind:
            raise self.expected(what)
        return self.take()

    def letter(self, token: Token) -> Token:
        self.letters.setdefault(token.text, token.pos)
        return token

    def enter(self, token: Token):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(token, f"nested more than {MAX_DEPTH} deep")

    def nest(self, node, token: Token, children):
        """Set ``node.height`` from its children's; SpecError past :data:`MAX_DEPTH`."""
        node.height = 1 + max((child.height for child in children), default=0)
        if node.height > MAX_DEPTH:
            raise self.error(token, f"nested more than {MAX_DEPTH} deep (counting [ ], {{ }}, '*' and '?')")
        return node

    # -- grammar ---------------------------------------------------------
    def spec(self) -> Spec:
        """spec := [INPUT ['[' HxWxD ']'] ('->' chain | end)] | chain"""
        first = self.peek()
        dims = input_pos = None
        chain: list = []
        if first.kind == "word" and first.text.upper() == INPUT:
            input_pos = self.take().pos
            if self.peek().kind == "[":
                self.take()
                dims = self.expect("dims", "the input volume HxWxD (e.g. 32x32x3)")
                if len(dims.value) != 3:
                    raise self.error(dims, f"the input volume needs three sizes HxWxD, got {dims.text}")
                self.expect("]", "']'")
            if self.peek().kind != "end":
                self.expect("->", "'->' or end of spec")
                chain = self.chain("end")
        else:
            chain = self.chain("end")
        return Spec(self.text, dims, input_pos, chain, self.letters)

    def chain(self, *closers: str, empty: bool = False) -> list:
        """chain := element ('->' element)*, followed by one of ``closers`` (or nothing, if ``empty``)."""
        if empty and self.peek().kind in closers:
            return []
        nodes = [self.element()]
        while self.peek().kind == "->":
            self.take()
            nodes.append(self.element())
        if self.peek().kind not in closers:
            raise self.expected("'->' or " + " or ".join(_CLOSERS[c] for c in closers))
        return nodes

    def element(self):
        """element := primary ('*' count | '?')*"""
        node = self.primary()
        while self.peek().kind in ("*", "?"):
            mark = self.take()
            if mark.kind == "?":
                node = self.nest(Optional(node, mark.pos), mark, [node])
                continue
            count = self.peek()
            if count.kind == "word":
                self.letter(count)
            elif count.kind != "int":
                raise self.expected("a repetition count after '*' (a whole number or a letter such as N)")
            node = self.nest(Repeat(node, self.take(), mark.pos), mark, [node])
        return node

    def primary(self):
        """primary := '[' chain ']' | layer"""
        token = self.peek()
        if token.kind == "[":
            self.enter(self.take())
            chain = self.chain("]")
            self.take()
            self.depth -= 1
            return self.nest(Group(chain, token.pos), token, chain)
        if token.kind == "word":
            return self.layer()
        raise self.expected("a layer (CONV, POOL, FC, RELU, ...) or '['")

    def layer(self) -> LayerNode:
        """layer := KEYWORD[digits] ['-' value] ('/' MODIFIER)* ['(' arguments ')'] ['{' chain ('|' chain)* '}']"""
        token = self.take()
        kind, digits = split_keyword(token.text)
        if kind is None:
            base = re.sub(f"{_NUMBERS}$", "", token.text) or token.text
            if base.upper() == INPUT:
                raise self.error(token, "INPUT can only be the first element of a spec")
            suggestion = closest_keyword(base)
            raise self.error(token, f"unknown layer {base!r}", f"did you mean {suggestion}?" if suggestion else
                             "known layers: " + ", ".join(k.name for k in KEYWORDS.values()))
        args: dict[str, Token] = {}
        if digits:
            if kind.compact is None:
                raise self.error(token, f"{kind.name} takes no number after its name")
            args[kind.compact] = _number_token(digits, token.pos + len(token.text) - len(digits))
        if kind.dash and self.peek().kind == "-":
            self.take()
            if self.peek().kind not in ("int", "word"):
                raise self.expected(f"the {kind.dash} of {kind.name} after '-' (e.g. {kind.name}3-64)")
            value = self.take()
            args[kind.dash] = self.letter(value) if value.kind == "word" else value
        while self.peek().kind == "/":
            self.modifier(kind, args)
        if self.peek().kind == "(":
            if args:
                raise self.error(self.peek(), f"write {kind.name}'s arguments either compactly "
                                 f"({kind.name}3-64/S2) or in parentheses ({kind.name}(F=3,K=64,S=2)), not both")
            self.arguments(kind, args)
        branches = []
        if kind.branches:
            branches = self.block(kind)
        elif self.peek().kind == "{":
            raise self.error(self.peek(), f"{kind.name} takes no {{ }} block (only RES and CONCAT do)")
        return self.nest(LayerNode(kind, token.pos, args, branches), token, [n for b in branches for n in b])

    def modifier(self, kind: Kind, args: dict):
        """``/S2``, ``/P1``, ``/D2`` (``/P1x2`` for a pair)."""
        self.take()
        token = self.peek()
        match = re.fullmatch(f"([A-Za-z])({_NUMBERS})", token.text) if token.kind == "word" else None
        allowed = ", ".join(f"/{m}" for m in kind.modifiers)
        if not kind.modifiers:
            raise self.error(token, f"{kind.name} takes no '/' modifiers")
        if match is None:
            raise self.expected(f"a modifier after '/' ({allowed} followed by a number, e.g. /S2)")
        letter = match.group(1).upper()
        if letter not in kind.modifiers:
            raise self.error(token, f"{kind.name} takes no /{letter} modifier", f"it takes {allowed}")
        name = MODIFIERS[letter]
        if name in args:
            raise self.error(token, f"{kind.name}: {name} given twice")
        self.take()
        args[name] = _number_token(match.group(2), token.pos + 1)

    def arguments(self, kind: Kind, args: dict):
        """arguments := [argument (',' argument)*]; argument := [name '='] value"""
        opening = self.take()
        if not kind.args:
            raise self.error(opening, f"{kind.name} takes no arguments")
        if self.peek().kind == ")":
            self.take()
            return
        index, named = 0, False
        while True:
            token = self.peek()
            if token.kind == "word" and self.peek(1).kind == "=":
                name = kind.arg_name(token.text)
                if name is None:
                    suggestion = closest_arg(token.text, kind)
                    raise self.error(token, f"{kind.name} has no argument {token.text!r}",
                                     f"did you mean {suggestion}?" if suggestion else
                                     f"it takes {', '.join(kind.args)}")
                self.take()
                self.take()  # the '='
                named = True
            elif named:
                raise self.error(token, "a positional argument cannot follow a named one")
            elif index >= kind.positional:
                raise self.error(token, f"name {kind.name}'s arguments ({', '.join(a + '=' for a in kind.args)})"
                                 if kind.positional == 0 else
                                 f"{kind.name} takes at most {kind.positional} positional argument(s)")
            else:
                name, index = kind.args[index], index + 1
            if name in args:
                raise self.error(token, f"{kind.name}: {name} given twice")
            value = self.peek()
            if value.kind not in ("int", "float", "dims", "word"):
                raise self.expected(f"a value for {name}")
            if value.kind == "word" and not is_literal_word(ARGS[name], value.text):
                self.letter(value)
            args[name] = self.take()
            if self.peek().kind == ")":
                self.take()
                return
            self.expect(",", "',' or ')'")

    def block(self, kind: Kind) -> list[list]:
        """``{ chain ('|' chain)* }`` of RES and CONCAT; a chain may be empty (the identity)."""
        opening = self.peek()
        if opening.kind != "{":
            raise self.expected(f"'{{' after {kind.name} ({kind.name}{{ CONV -> RELU | ... }})")
        self.enter(self.take())
        branches = [self.chain("|", "}", empty=True)]
        while self.peek().kind == "|":
            bar = self.take()
            fewest, most = kind.branches
            if most is not None and len(branches) >= most:
                raise self.error(bar, f"{kind.name} takes at most {most} chains inside {{ }} (body | shortcut)")
            branches.append(self.chain("|", "}", empty=True))
        self.take()
        self.depth -= 1
        return branches

