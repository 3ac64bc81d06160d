"""From a parsed spec to layers: expand repetitions, fill defaults, construct.

Three passes over the tree from :mod:`volnet.spec.parser`:

1. *expand*: ``[...]*N`` becomes N copies, ``X?`` stays or goes, letters in
   counts take their values; the result is a flat list of layer nodes
   (containers keep their own lists).
2. *fill defaults*: a bare CONV gets F=3, "same" padding and
   ``K = 32 * 2**(pooling layers before it)``; a bare POOL 2x2 stride 2; a
   bare FC 512, or ``classes`` for the last FC of the net.
3. *construct* the layer objects; a hyperparameter a layer rejects becomes a
   :class:`SpecError` at its column. Shapes are checked later, when
   :class:`~volnet.Sequential` builds the layers (:class:`~volnet.ShapeError`).
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass

import numpy as np

from ..layers.base import LAYER_TYPES
from ..net import Sequential
from ..shapes import ShapeError, effective_extent, format_volume, pair
from .errors import SpecError
from .keywords import ARGS, BARE_F, BARE_POOL, BASE_WIDTH, BOOLS, FITS, HIDDEN_FC, Arg, Kind, is_literal_word
from .lexer import Token
from .parser import Group, LayerNode, Optional, Repeat, Spec, parse

MAX_LAYERS = 10_000  # after expanding repetitions, containers' inner layers included

# modules that define layers volnet.layers may not import yet
_LAYER_MODULES = ("volnet.layers.containers", "volnet.layers.local")


@dataclass
class Item:
    """One layer after expansion: its keyword, position and arguments as written."""

    node: LayerNode
    branches: list[list[Item]]

    @property
    def kind(self) -> Kind:
        return self.node.kind

    @property
    def size(self) -> int:
        return 1 + sum(item.size for branch in self.branches for item in branch)


def build_layers(text: str, input=None, classes: int | None = None, *, optional: bool = True,
                 **letters) -> tuple[tuple[int, int, int], list]:
    """The input volume and the (not yet built) layers of a spec; see :func:`volnet.spec.build`."""
    spec = parse(text)
    return _Builder(spec, input, classes, optional, letters).run()


def build(text: str, input=None, classes: int | None = None, *, seed: int = 0, dtype=np.float32,
          optional: bool = True, allocate: bool = True, **letters) -> Sequential:
    """Build the :class:`~volnet.Sequential` a spec describes (the grammar: :mod:`volnet.spec`).

    Args:
        text: the spec, e.g. ``"INPUT[32x32x3] -> [CONV3-32 -> RELU]*2 -> POOL2 -> FC10"``.
        input: the input volume when the spec has no ``INPUT[HxWxD]``: ``"32x32x3"`` or ``(32, 32, 3)``.
        classes: K of the last FC when it is written bare (``... -> FC``).
        seed: seeds the weight initialisation. Default: 0.
        dtype: parameter dtype. Default: float32.
        optional: whether elements marked ``?`` are included. Default: True.
        allocate: allocate the weights; False checks shapes and counts
            parameters only (see :class:`~volnet.Sequential`). Default: True.
        **letters: values of the letters in the spec (``N=2`` for ``[CONV -> RELU]*N``).

    Raises:
        SpecError: on a spec that does not parse, a missing letter or input,
            or a hyperparameter out of range; the message shows the column.
        ShapeError: when the layers do not fit the input volume (from
            :class:`~volnet.Sequential`, naming the layer).

    Example:
        >>> net = build("INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC",
        ...             input="32x32x3", classes=10, N=2, M=3, K=2)
        >>> net.shapes[4], net.output_shape
        ((16, 16, 32), (10,))
    """
    input_shape, layers = build_layers(text, input, classes, optional=optional, **letters)
    return Sequential(layers, input_shape, seed=seed, dtype=dtype, allocate=allocate)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _layer_class(name: str):
    """``volnet.layers.<name>``, importing the modules of newer layers on the way; None if absent."""
    import volnet.layers

    cls = getattr(volnet.layers, name, None) or LAYER_TYPES.get(name)
    if cls is None:
        for module in _LAYER_MODULES:
            try:
                importlib.import_module(module)
            except ImportError:
                continue
        cls = LAYER_TYPES.get(name)
    return cls


class _Builder:
    def __init__(self, spec: Spec, input, classes, optional: bool, letters: dict):
        self.spec, self.text = spec, spec.text
        self.input, self.classes, self.optional, self.letters = input, classes, bool(optional), letters
        self.count = 0

    def error(self, position: int | None, reason: str, hint: str | None = None) -> SpecError:
        return SpecError(reason, self.text, position, hint)

    def run(self):
        unused = sorted(set(self.letters) - set(self.spec.letters))
        if unused:
            raise self.error(None, f"{', '.join(f'{n}={self.letters[n]!r}' for n in unused)} given, but the spec "
                             f"has no letter {unused[0]}", self._case_hint(unused[0], self.spec.letters))
        if self.classes is not None and not (_is_int(self.classes) and self.classes >= 1):
            raise self.error(None, f"classes must be a whole number >= 1, got {self.classes!r}")
        input_shape = self._input_shape()
        items = self.expand(self.spec.chain)
        return input_shape, self.construct_chain(items, pools=0, top=True)

    # -- input -----------------------------------------------------------
    def _input_shape(self) -> tuple[int, int, int]:
        given = None if self.input is None else self._parse_input(self.input)
        written = self.spec.input
        if written is not None:
            shape = written.value
            if min(shape) < 1:
                raise self.error(written.pos, f"input sizes must be >= 1, got {written.text}")
            if given is not None and given != shape:
                raise self.error(written.pos, f"INPUT[{written.text}] disagrees with input={self.input!r}")
            return shape
        if given is None:
            raise self.error(self.spec.input_pos or 0, "no input volume",
                             "write INPUT[HxWxD] first (e.g. INPUT[32x32x3]) or pass input='32x32x3'")
        return given

    def _parse_input(self, value) -> tuple[int, int, int]:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
            dims = tuple(int(d) for d in match.groups()) if match else None
        else:
            try:
                dims = tuple(value)
            except TypeError:
                dims = None
        if dims is None or len(dims) != 3 or not all(_is_int(d) and d >= 1 for d in dims):
            raise self.error(None, f"input={value!r} is not a volume",
                             "pass 'HxWxD' such as '32x32x3', or a tuple (32, 32, 3)")
        return tuple(int(d) for d in dims)

    # -- pass 1: expand --------------------------------------------------
    def expand(self, chain: list) -> list[Item]:
        items: list[Item] = []
        for node in chain:
            items += self.expand_node(node)
        return items

    def expand_node(self, node) -> list[Item]:
        if isinstance(node, Group):
            return self.expand(node.chain)
        if isinstance(node, Optional):
            return self.expand_node(node.node) if self.optional else []
        if isinstance(node, Repeat):
            times = self.number(node.count, "repetition count", low=0)
            if times == 0:
                return []
            body = self.expand_node(node.node)
            self.grow(sum(item.size for item in body) * (times - 1), node.pos)
            return body * times
        item = Item(node, [self.expand(branch) for branch in node.branches])
        self.grow(1, node.pos)
        return [item]

    def grow(self, layers: int, position: int):
        self.count += layers
        if self.count > MAX_LAYERS:
            raise self.error(position, f"the spec expands to more than {MAX_LAYERS} layers")

    # -- values ----------------------------------------------------------
    def letter(self, token: Token):
        if token.text not in self.letters:
            raise self.error(token.pos, f"no value for {token.text}",
                             self._case_hint(token.text, self.letters) or f"pass {token.text}=... to build()")
        return self.letters[token.text]

    @staticmethod
    def _case_hint(name: str, names) -> str | None:
        near = [n for n in names if n.lower() == name.lower() and n != name]
        return f"did you mean {near[0]}? (letters are case-sensitive)" if near else None

    def number(self, token: Token, what: str, low: int) -> int:
        value = self.letter(token) if token.kind == "word" else token.value
        if not _is_int(value) or value < low:
            raise self.error(token.pos, f"{what} must be a whole number >= {low}, got {value!r}")
        return int(value)

    def value(self, token: Token, arg: Arg, kind: Kind):
        """The Python value of an argument, checked against its type and range."""
        what = f"{kind.name} {arg.name}"
        if arg.type == "fit":
            text = token.text.lower()
            if token.kind != "word" or text not in (*FITS, "none"):
                raise self.error(token.pos, f"{what} must be pad, crop or none, got {token.text!r}")
            return None if text == "none" else text
        if token.kind == "word":
            value = BOOLS[token.text.lower()] if is_literal_word(arg, token.text) else self.letter(token)
        else:
            value = token.value
        if arg.type == "bool":
            if isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1)):
                return bool(value)
            raise self.error(token.pos, f"{what} must be true or false (or 1 or 0), got {value!r}")
        if arg.type == "float":
            if _is_int(value) or isinstance(value, (float, np.floating)):
                if value >= arg.low:
                    return float(value)
            raise self.error(token.pos, f"{what} must be a number >= {arg.low:g}, got {value!r}")
        if arg.type == "pair" and isinstance(value, (tuple, list)) and len(value) == 2:
            if all(_is_int(v) and v >= arg.low for v in value):
                return tuple(int(v) for v in value)
        elif _is_int(value) and value >= arg.low:
            return int(value)
        shape = "a whole number" + (" or an HxW pair" if arg.type == "pair" else "")
        written = format_volume(value) if isinstance(value, tuple) else repr(value)
        raise self.error(token.pos, f"{what} must be {shape} >= {arg.low:g}, got {written}")

    # -- passes 2 and 3: defaults, construction --------------------------
    def construct_chain(self, items: list[Item], pools: int, top: bool = False) -> list:
        last_fc = max((i for i, item in enumerate(items) if item.kind.name == "FC"), default=None) if top else None
        layers = []
        for index, item in enumerate(items):
            layers.append(self.construct(item, pools, last_fc=index == last_fc))
            pools += item.kind.is_pool
        return layers

    def construct(self, item: Item, pools: int, last_fc: bool):
        kind, node = item.kind, item.node
        cls = _layer_class(kind.layer)
        if cls is None:
            raise self.error(node.pos, f"{kind.name} needs volnet.layers.{kind.layer}, which this volnet lacks")
        accepted = inspect.signature(cls).parameters
        for name, token in node.args.items():
            if name not in accepted:
                raise self.error(token.pos, f"{kind.name} takes no {name} in this volnet",
                                 f"it takes {', '.join(a for a in kind.args if a in accepted)}")
        args = {name: self.value(token, ARGS[name], kind) for name, token in node.args.items()}
        args = self.defaults(item, args, pools, last_fc)
        try:
            return cls(**args)
        except ShapeError:
            raise
        except ValueError as error:
            raise self.error(node.pos, str(error)) from None

    def defaults(self, item: Item, args: dict, pools: int, last_fc: bool) -> dict:
        kind, node = item.kind, item.node
        if kind.name in ("CONV", "LC"):
            args.setdefault("F", BARE_F)
            args.setdefault("K", BASE_WIDTH * 2 ** pools)
            if "P" not in args:
                args["P"] = self.same_padding(item, args["F"], args.get("dilation", 1))
        elif kind.is_pool:
            args.setdefault("F", BARE_POOL)
            args.setdefault("S", args["F"])
        elif kind.name == "FC" and last_fc:
            if self.classes is None and "K" not in args:
                raise self.error(node.pos, "the last FC, which gives the class scores, has no K",
                                 "pass classes=... or write it, e.g. FC10")
            if self.classes is not None and args.setdefault("K", self.classes) != self.classes:
                raise self.error(node.args["K"].pos,
                                 f"the last FC has K={args['K']} but classes={self.classes}")
        elif kind.name == "FC":
            args.setdefault("K", HIDDEN_FC)
        elif kind.name == "INCEPTION":
            missing = [a for a in kind.args if a not in args]
            if missing:
                raise self.error(node.pos, f"INCEPTION needs {', '.join(missing)}",
                                 "write INCEPTION(c1, c3_reduce, c3, c5_reduce, c5, pool_proj), "
                                 "e.g. INCEPTION(64,96,128,16,32,32)")
        elif kind.name == "RES":
            body, *shortcut = (self.construct_chain(branch, pools) for branch in item.branches)
            args.update(body=body, shortcut=shortcut[0] if shortcut else None)
        elif kind.name == "CONCAT":
            args["branches"] = [self.construct_chain(branch, pools) for branch in item.branches]
        return args

    def same_padding(self, item: Item, F, dilation):
        """P that keeps the size at S=1: ``(extent - 1)/2`` per axis, with ``extent = dilation*(F-1) + 1``."""
        pads = []
        for f, d in zip(pair(F, "F"), pair(dilation, "dilation")):
            extent = effective_extent(f, d)
            if extent % 2 == 0:
                low = (extent - 1) // 2
                raise self.error(item.node.pos,
                                 f"{item.kind.name} with F={f}{f' and dilation={d}' if d > 1 else ''} has no "
                                 f"symmetric 'same' padding (the filter spans {extent}, an even number)",
                                 f"give P explicitly: /P{low} (or P={low}) makes the output 1 smaller "
                                 f"than the input, /P{low + 1} 1 larger")
            pads.append((extent - 1) // 2)
        return pads[0] if not isinstance(F, tuple) and not isinstance(dilation, tuple) else tuple(pads)
