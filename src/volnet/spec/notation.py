"""Write a network in the notation: ``to_notation(net)``, the inverse of :func:`volnet.spec.build`.

Everything is written explicitly, so that no default of the builder matters:
``INPUT[HxWxD]`` first, CONV and LC as ``CONV3-64/S1/P1`` (``/D2`` when
dilated), pooling as ``POOL2/S2``, FC as ``FC10``, and the keyword form
``CONV(F=3,K=64,S=2,P=0,fit=crop)`` when a layer has a ``fit``. Pairs are
written ``3x5``; a pair with equal sides stays a pair (``3x3``), an int
stays an int, so ``build(to_notation(net))`` gives layers with equal
:meth:`~volnet.layers.Layer.get_config`. Repetitions are not detected:
every layer is written out.

How a layer is written follows from the keyword its class declares
(:class:`volnet.layers.base.Keyword`): a container (``branches``) as a
block of the chains its class's ``notation_paths(config)`` names, a window
layer (digits for F) in the compact ``CONV3-64/S1/P1`` form, FC as its
digits, the rest with their arguments in parentheses.
"""

from __future__ import annotations

import inspect

from ..layers import LAYER_TYPES
from ..shapes import format_volume
from .errors import SpecError
from .keywords import BY_LAYER, MODIFIERS, Kind


def to_notation(net) -> str:
    """The spec of a :class:`~volnet.Sequential`, one ``->`` per layer.

    Raises:
        SpecError: for a layer the notation has no keyword for.

    Example:
        >>> from volnet import Sequential
        >>> from volnet.layers import Conv2D, ReLU, MaxPool, FC
        >>> net = Sequential([Conv2D(12, 3, P=1), ReLU(), MaxPool(2, 2), FC(10)], input_shape=(32, 32, 3))
        >>> to_notation(net)
        'INPUT[32x32x3] -> CONV3-12/S1/P1 -> RELU -> POOL2/S2 -> FC10'
    """
    return " -> ".join([f"INPUT[{format_volume(net.input_shape)}]", *(write_layer(layer) for layer in net.layers)])


def write_layer(layer) -> str:
    """One layer (or a ``{"type": ..., **get_config()}`` dict) in the notation."""
    config = _config(layer)
    kind = BY_LAYER.get(config["type"])
    if kind is None:
        raise SpecError(f"{config['type']} has no keyword in the notation")
    args = {name: value for name, value in config.items() if name != "type"}
    cls = LAYER_TYPES[config["type"]]
    if kind.branches:  # RES{ body | shortcut }, CONCAT{ a | b | c }
        return _block(kind, cls.notation_paths(args))
    unknown = sorted(set(args) - set(kind.args))
    if unknown:
        raise SpecError(f"{config['type']} with {', '.join(unknown)} cannot be written in the notation")
    if kind.compact == "F":  # CONV, LC and the pooling layers: digits for the window
        return _windowed(kind, args)
    if kind.compact:  # FC
        return f"{kind.name}{_number(args[kind.compact])}"
    if kind.args and kind.positional == len(kind.args):  # DROPOUT(0.5), INCEPTION(64,96,128,16,32,32): every value
        return f"{kind.name}({','.join(_number(args[a]) for a in kind.args)})"
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}
    written = [a for a in kind.args if a in args and defaults.get(a, inspect.Parameter.empty) != args[a]]
    if not written:  # RELU, FLATTEN, GAP, BN with its defaults
        return kind.name
    return f"{kind.name}({','.join(f'{a}={_number(args[a])}' for a in written)})"


def _config(layer) -> dict:
    if isinstance(layer, dict):
        return layer
    return {"type": type(layer).__name__, **layer.get_config()}


def _number(value) -> str:
    """3 -> '3'; (3, 5) -> '3x5'; 0.5 -> '0.5' (repr, so floats read back exactly)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "x".join(str(int(v)) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


def _windowed(kind: Kind, args: dict) -> str:
    """CONV, LC and the pooling layers: compact ``CONV3-64/S1/P1``, keyword form when ``fit`` is set.

    F, K, S and (for CONV and LC) P are always written; dilation, bias and a
    pooling layer's P only when they differ from 1, true and 0.
    """
    quiet = {"dilation": 1, "bias": True, **({} if kind.dash else {"P": 0})}
    written = [a for a in kind.args if a in args and a != "fit" and (a not in quiet or args[a] != quiet[a])]
    if args.get("fit") is not None:
        pairs = ",".join(f"{a}={_number(args[a])}" for a in written)
        return f"{kind.name}({pairs},fit={args['fit']})"
    text = kind.name + _number(args["F"]) + (f"-{_number(args['K'])}" if kind.dash else "")
    letters = {letter: name for letter, name in MODIFIERS.items()}
    return text + "".join(f"/{letter}{_number(int(args[name]) if name == 'bias' else args[name])}"
                          for letter, name in letters.items() if name in written)


def _block(kind: Kind, chains) -> str:
    """``RES{ a -> b | c }``; an empty chain (the identity) is written as nothing: ``CONCAT{ | CONV1-8/S1/P0 }``."""
    written = [" -> ".join(write_layer(layer) for layer in chain) for chain in chains]
    return kind.name + "{" + "|".join(f" {chain} " if chain else " " for chain in written) + "}"
