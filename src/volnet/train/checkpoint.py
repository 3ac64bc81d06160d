"""Checkpoints: one safetensors file holding the weights and a JSON description.

Layout of ``checkpoint.safetensors``:

* tensors ``layers.<i>.<name>``: parameters and buffers of layer i (1-based,
  as in ``net.summary()``);
* tensors ``optimizer.<state>.<j>``: the optimizer's per-parameter caches;
* tensors ``trainer.<name>``: the rest of a run's array state (the current
  epoch's shuffled order);
* header metadata ``volnet``: a JSON document with the architecture, the
  optimizer's configuration and scalars, the schedule, the epoch and batch
  reached, every random generator's state, the data normalisation and the
  history so far.

Keeping everything in one file makes saving atomic: the bytes go to a
temporary file in the same folder, are flushed to disk (fsync), and the
temporary file is renamed over the old checkpoint, so a crash or Ctrl-C at
any moment leaves either the old checkpoint or the new one, never half of
one. Nothing is ever unpickled: safetensors holds raw arrays and JSON text.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "volnet-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the network it is loaded into."""


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:  # pragma: no cover - exercised only without the train extra
        raise CheckpointError(
            "checkpoints need the safetensors package: pip install 'volnet[train]' (or pip install safetensors)"
        ) from None
    return safetensors.numpy


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def network_tensors(net) -> dict[str, np.ndarray]:
    """Parameters and buffers of every layer, named ``layers.<i>.<name>``."""
    tensors = {}
    for index, layer in enumerate(net.layers, start=1):
        for name, p in layer.named_params():
            tensors[f"layers.{index}.{name}"] = p.value
        for name, value in layer.named_buffers().items():
            tensors[f"layers.{index}.{name}"] = value
    return tensors


def save(path, tensors: dict[str, np.ndarray], metadata: dict) -> Path:
    """Save arrays and a JSON-able description atomically into one safetensors file."""
    header = {"format": FORMAT, "version": VERSION, **metadata}
    data = _safetensors().save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                               metadata={"volnet": json.dumps(header)})
    return atomic_write_bytes(path, data)


def read(path) -> tuple[dict[str, np.ndarray], dict]:
    """``(tensors, metadata)`` of a checkpoint, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        hint = f"; did you mean {path / 'checkpoint.safetensors'}?" if path.is_dir() else ""
        raise CheckpointError(f"checkpoint {path} does not exist{hint}")
    st = _safetensors()
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            header = (f.metadata() or {}).get("volnet")
        tensors = st.load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for torn or foreign files
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({error})") from None
    if header is None:
        raise CheckpointError(f"{path} is a safetensors file but not a volnet checkpoint (no 'volnet' metadata)")
    metadata = json.loads(header)
    if metadata.get("format") != FORMAT or metadata.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {metadata.get('format')!r} "
                              f"version {metadata.get('version')!r}")
    return tensors, metadata


def load_network_tensors(net, tensors: dict[str, np.ndarray], source="checkpoint") -> None:
    """Copy saved parameters and buffers into ``net`` in place.

    Raises :class:`CheckpointError` naming the first tensor that is missing
    or whose shape differs, with both shapes.
    """
    expected = network_tensors(net)
    for name, current in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{source} has no tensor {name!r} (layer {name.split('.')[1]} of the network); "
                                  "was it saved from a different architecture?")
        saved = tensors[name]
        if saved.shape != current.shape:
            index = int(name.split(".")[1])
            raise CheckpointError(
                f"{source} tensor {name!r} has shape {saved.shape} but {net.layers[index - 1].label} "
                f"expects {current.shape}: the architectures differ"
            )
    extra = sorted(k for k in tensors if k.startswith("layers.") and k not in expected)
    if extra:
        raise CheckpointError(f"{source} has tensor {extra[0]!r} that this network has no place for; "
                              "was it saved from a different architecture?")
    for name, current in expected.items():
        current[...] = tensors[name]


def load_model(path):
    """``(net, normalizer, tensors, metadata)`` from a checkpoint, weights loaded.

    ``normalizer`` is the data normalisation the net was trained with (or
    None); apply it to images before ``net.forward``.
    """
    from ..data.augment import Normalizer
    from ..net import Sequential

    tensors, metadata = read(path)
    net = Sequential.from_config(metadata["architecture"])
    load_network_tensors(net, tensors, source=str(path))
    normalizer = Normalizer.from_config(metadata["normalizer"]) if metadata.get("normalizer") else None
    return net, normalizer, tensors, metadata


def layer_generators(net) -> dict[str, np.random.Generator]:
    """Random generators held by layers (Dropout), keyed ``"<i>"`` or ``"<i>.<path>"`` for nested layers."""
    return {f"{index}.{path}" if path else str(index): layer.rng
            for index, top in enumerate(net.layers, start=1) for path, layer in top.named_layers()
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def set_layer_generator(net, key: str, rng: np.random.Generator) -> None:
    index, _, path = key.partition(".")
    layer = dict(net.layers[int(index) - 1].named_layers())[path]
    layer.rng = rng


def generator_state(rng: np.random.Generator) -> dict:
    """JSON-able state of a NumPy generator."""
    return rng.bit_generator.state


def restore_generator(state: dict) -> np.random.Generator:
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
