"""Fine-tuning: start from another run's weights, freeze layers.

* :func:`init_from` copies into a new network the weights of the layers that
  match a checkpoint's (same position, same kind, same parameter and buffer
  shapes); the others, such as a new classifier head for another number of
  classes, keep their fresh initialisation and are listed.
* :func:`freeze` sets ``layer.trainable = False`` on the layers a
  specification names (``"1-6"``, ``"1,3"``, ``"CONV"``: every layer of that
  notation kind, ``"CONV,7"``...). An optimizer built on
  ``net.trainable_params()`` holds no state for them; the frozen first layers
  run in inference mode and no gradient is computed for them
  (:attr:`volnet.Sequential.frozen_prefix`); a frozen layer after a trainable
  one passes the gradient back to it (its kernel computes its weight gradient
  with it), and is never updated.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import checkpoint as ckpt
from .restore import check_fits, network_tensors


@dataclass(frozen=True)
class Transfer:
    """What :func:`init_from` did: the layers (1-based) copied, and those left fresh with the reason."""

    copied: list[int]
    fresh: list[tuple[int, str]]


def _layer_tensors(tensors: dict, index: int) -> dict:
    prefix = f"layers.{index}."
    return {name[len(prefix):]: value for name, value in tensors.items() if name.startswith(prefix)}


def init_from(net, path) -> Transfer:
    """Copy into ``net`` (in place) the weights of every layer that matches the checkpoint at ``path``.

    Layer i matches when the checkpoint's layer i is of the same kind and holds the same parameters and
    buffers with the same shapes. Layers without parameters or buffers are neither copied nor listed.

    Raises:
        CheckpointError: the file is not a readable checkpoint, or its floats do not convert exactly.
    """
    tensors, metadata = ckpt.read(path)
    saved_layers = metadata["architecture"]["layers"]
    mine = network_tensors(net)
    copied, fresh = [], []
    for index, layer in enumerate(net.layers, start=1):
        ours = _layer_tensors(mine, index)
        if not ours:
            continue
        theirs = _layer_tensors(tensors, index)
        if index > len(saved_layers):
            fresh.append((index, f"the checkpoint has {len(saved_layers)} layers"))
            continue
        kind = saved_layers[index - 1]["type"]
        if kind != type(layer).__name__:
            fresh.append((index, f"the checkpoint's layer {index} is {kind}"))
            continue
        differing = [name for name in ours if name not in theirs or theirs[name].shape != ours[name].shape]
        if differing or set(theirs) != set(ours):
            name = (differing or sorted(set(theirs) ^ set(ours)))[0]
            got = theirs[name].shape if name in theirs else "none"
            fresh.append((index, f"{name} is {ours[name].shape if name in ours else 'none'} here, {got} there"))
            continue
        for name, value in ours.items():
            check_fits(str(path), f"layers.{index}.{name}", theirs[name], value, layer.label)
            value[...] = theirs[name]
        copied.append(index)
    return Transfer(copied, fresh)


def parse_layers(spec: str, net) -> list[int]:
    """The layers (1-based, sorted) ``spec`` names: numbers, ranges ``a-b`` and notation kinds, comma-separated.

    A kind (``CONV``, ``FC``, ``BN``... or an alias) stands for every top-level layer of that kind.

    Raises:
        ValueError: a number out of range, a reversed range, or a word that is no layer kind of the net.
    """
    count, chosen = len(net.layers), set()
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        first, dash, last = token.partition("-")
        if first.isdigit() and (not dash or last.isdigit()):
            a, b = int(first), int(last) if dash else int(first)
            if not 1 <= a <= b <= count:
                raise ValueError(f"layers {token!r} are not within 1-{count} (the net's layers, as its summary "
                                 "numbers them)")
            chosen.update(range(a, b + 1))
            continue
        kinds = {index for index, layer in enumerate(net.layers, start=1) if layer.keyword is not None
                 and token.upper() in (layer.keyword.name, *layer.keyword.aliases)}
        if not kinds:
            present = sorted({layer.keyword.name for layer in net.layers if layer.keyword is not None})
            raise ValueError(f"{token!r} is neither layer numbers (1-{count}, e.g. 1-6) nor a kind of layer "
                             f"of this net ({', '.join(present)})")
        chosen.update(kinds)
    return sorted(chosen)


def freeze(net, layers) -> list[int]:
    """Freeze ``layers`` (1-based indices, or a :func:`parse_layers` specification); returns the frozen layers
    that hold parameters or buffers (what ``net.frozen`` lists).

    Raises:
        ValueError: a bad specification, nothing left to train, or a frozen layer with running averages
            (BatchNorm) after a trainable layer (see :func:`check_frozen`).
    """
    indices = parse_layers(layers, net) if isinstance(layers, str) else sorted(layers)
    for index in indices:
        net.layers[index - 1].trainable = False
    check_frozen(net)
    return net.frozen


def check_frozen(net) -> None:
    """Refuse what freezing cannot keep: every parameter frozen, or a frozen layer whose running averages
    would still move because it trains in training mode behind a trainable layer."""
    if net.params() and not net.trainable_params():
        raise ValueError("every layer with parameters is frozen: nothing would train; freeze fewer layers")
    prefix = net.frozen_prefix
    for index in net.frozen:
        layer = net.layers[index - 1]
        if index > prefix and layer.named_buffers():
            raise ValueError(f"{layer.label} is frozen but comes after a trainable layer, where it would run in "
                             "training mode and its running averages would move; freeze it together with every "
                             "layer before it, or leave it trainable")


def check_optimizer(net, optimizer) -> None:
    """The optimizer holds no parameter of a frozen layer (it would keep state for it and update it)."""
    frozen = {id(p) for p in net.params()} - {id(p) for p in net.trainable_params()}
    if any(id(p) in frozen for p in optimizer.params):
        raise ValueError(f"the optimizer holds parameters of frozen layers ({', '.join(map(str, net.frozen))}); "
                         "build it on net.trainable_params() after freezing")
