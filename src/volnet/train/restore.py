"""From a checkpoint's tensors to live objects and back: the network's parameters and buffers
(``layers.<i>.<name>``), the optimizer's caches (``optimizer.<state>.<j>``), an interrupted epoch's order
(``trainer.order``) and the random generators. Every misfit is a one-line :class:`CheckpointError` naming
the tensor or field; :mod:`volnet.train.checkpoint` calls these after it has read and checked the file."""

from __future__ import annotations

import numpy as np

from .schema import BAD_CONFIG, CheckpointError, reason

# Bit generators whose state is plain JSON integers: what default_rng and Generator.spawn make.
BIT_GENERATORS = ("PCG64", "PCG64DXSM")


def network_tensors(net) -> dict[str, np.ndarray]:
    """Parameters and buffers of every layer, named ``layers.<i>.<name>``."""
    tensors = {}
    for index, layer in enumerate(net.layers, start=1):
        for name, p in layer.named_params():
            tensors[f"layers.{index}.{name}"] = p.value
        for name, value in layer.named_buffers().items():
            tensors[f"layers.{index}.{name}"] = value
    return tensors


def build_network(config: dict, source="checkpoint"):
    """The :class:`~volnet.Sequential` an ``architecture`` field describes, refused before allocation if too big."""
    from ..net import Sequential
    from ..resources import ResourceError

    try:
        return Sequential.from_config(config)
    except ResourceError as error:
        raise CheckpointError(f"{source}: field 'architecture' describes a network this machine cannot hold: "
                              f"{error}") from None
    except BAD_CONFIG as error:
        raise CheckpointError(f"{source}: field 'architecture' does not build a network: {reason(error)}") from None


def check_fits(source, name: str, saved: np.ndarray, current: np.ndarray, holder: str) -> None:
    """A saved float tensor that converts exactly to the dtype ``holder`` (a layer, a parameter) holds."""
    if saved.dtype.kind != "f" or not np.can_cast(saved.dtype, current.dtype, "safe"):
        raise CheckpointError(f"{source}: tensor {name!r} is {saved.dtype} but {holder} holds {current.dtype}; "
                              "only floats that convert exactly are loaded (architecture.dtype)")


def load_network_tensors(net, tensors: dict[str, np.ndarray], source="checkpoint") -> None:
    """Copy saved parameters and buffers into ``net`` in place.

    Raises :class:`CheckpointError` naming the first tensor that is missing,
    whose shape differs (with both shapes), or whose dtype is not a float
    that converts exactly to the network's.
    """
    expected = network_tensors(net)
    for name, current in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{source} has no tensor {name!r} (layer {name.split('.')[1]} of the network); "
                                  "was it saved from a different architecture?")
        saved = tensors[name]
        index = int(name.split(".")[1])
        if saved.shape != current.shape:
            raise CheckpointError(
                f"{source} tensor {name!r} has shape {saved.shape} but {net.layers[index - 1].label} "
                f"expects {current.shape}: the architectures differ"
            )
        check_fits(source, name, saved, current, net.layers[index - 1].label)
    extra = sorted(k for k in tensors if k.startswith("layers.") and k not in expected)
    if extra:
        raise CheckpointError(f"{source} has tensor {extra[0]!r} that this network has no place for; "
                              "was it saved from a different architecture?")
    for name, current in expected.items():
        current[...] = tensors[name]


def load_optimizer_state(optimizer, tensors: dict[str, np.ndarray], scalars: dict, source="checkpoint") -> None:
    """Restore ``optimizer``'s caches from the tensors ``optimizer.<state>.<j>`` and its ``scalars``.

    Raises :class:`CheckpointError` naming the first tensor that is missing,
    has no place in this optimizer, or does not fit its parameter.
    """
    n, names = len(optimizer.params), list(optimizer.state_names)
    keeps = f"{type(optimizer).__name__} keeps {names or 'no state'} for each of its {n} parameters"
    expected = {f"optimizer.{name}.{j}": p for name in names for j, p in enumerate(optimizer.params)}
    extra = sorted(k for k in tensors if k.startswith("optimizer.") and k not in expected)
    if extra:
        raise CheckpointError(f"{source}: tensor {extra[0]!r} has no place in the optimizer ({keeps}); "
                              "field 'optimizer.config' and the tensors disagree")
    for key, p in expected.items():
        if key not in tensors:
            raise CheckpointError(f"{source} has no tensor {key!r} ({keeps})")
        j = int(key.rsplit(".", 1)[1])
        if tensors[key].shape != p.value.shape:
            raise CheckpointError(f"{source}: tensor {key!r} has shape {tensors[key].shape} but parameter {j} "
                                  f"({p.name}) has shape {p.value.shape}")
        check_fits(source, key, tensors[key], p.value, f"parameter {j} ({p.name})")
    try:
        optimizer.load_state_dict({"arrays": {name: [tensors[f"optimizer.{name}.{j}"] for j in range(n)]
                                              for name in names}, "scalars": scalars})
    except BAD_CONFIG as error:
        raise CheckpointError(f"{source}: field 'optimizer.scalars' does not fit the optimizer: "
                              f"{reason(error)}") from None


def epoch_order(tensors: dict[str, np.ndarray], images: int, source="checkpoint") -> np.ndarray | None:
    """The interrupted epoch's shuffled order (None between epochs), checked against the training set's size."""
    order = tensors.get("trainer.order")
    if order is not None and len(order) != images:
        raise CheckpointError(f"{source}: tensor 'trainer.order' shuffles {len(order)} images but the training "
                              f"set has {images}; resume with the data the run was started on")
    return order


def layer_generators(net) -> dict[str, np.random.Generator]:
    """Random generators held by layers (Dropout), keyed ``"<i>"`` or ``"<i>.<path>"`` for nested layers."""
    return {f"{index}.{path}" if path else str(index): layer.rng
            for index, top in enumerate(net.layers, start=1) for path, layer in top.named_layers()
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def set_layer_generator(net, key: str, rng: np.random.Generator) -> None:
    index, _, path = key.partition(".")
    layer = dict(net.layers[int(index) - 1].named_layers())[path]
    layer.rng = rng


def restore_layer_generators(net, states: dict, source="checkpoint") -> None:
    """Give every random layer of ``net`` its saved generator (field ``rng.layers``)."""
    keys = sorted(layer_generators(net))
    if sorted(states) != keys:
        raise CheckpointError(f"{source}: field 'rng.layers' holds generators for layers {sorted(states)} but "
                              f"the network's random layers are {keys}")
    for key, state in states.items():
        try:
            rng = restore_generator(state)
        except BAD_CONFIG as error:
            raise CheckpointError(f"{source}: field 'rng.layers.{key}' does not rebuild a NumPy random generator: "
                                  f"{reason(error)}") from None
        set_layer_generator(net, key, rng)


def generator_state(rng: np.random.Generator) -> dict:
    """JSON-able state of a NumPy generator."""
    return rng.bit_generator.state


def restore_generator(state: dict) -> np.random.Generator:
    """The generator :func:`generator_state` saved; a ValueError for a state NumPy would not give back."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise ValueError(f"the bit generator must be one of {', '.join(BIT_GENERATORS)}, got {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    if bit_generator.state != state:  # NumPy truncates a float, wraps an odd increment...
        raise ValueError("NumPy does not take this state back unchanged (a number that is not an unsigned "
                         "integer of the right size?)")
    return np.random.Generator(bit_generator)
