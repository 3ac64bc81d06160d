"""Choosing what computes a training run's steps: volnet's NumPy layers, or PyTorch in one process or in
several DistributedDataParallel workers (``volnet train --engine``, ``--device``, ``--nproc``, ``--sync-bn``).

A run on several workers is started by :func:`launch_workers` in this process, and each worker (which
:func:`~volnet.interop.torch_engine.is_worker`) opens its engine with :func:`open_engine` and builds its
trainer (:mod:`volnet.train.setup`) with it.
"""

from __future__ import annotations

import os

from ..train.setup import SetupError


def choose_device(engine: str = "numpy", device: str = "auto", *, nproc: int = 1, sync_bn: bool = False,
                  step_memory: int = 0) -> str | None:
    """The PyTorch device that ``engine="torch"`` trains on (``"cpu"`` or ``"cuda"``), or None for NumPy.

    ``nproc`` workers, each with a training step of ``step_memory`` bytes
    (:func:`worker_step_memory`), are checked against the machine before any starts.

    Raises:
        SetupError: the NumPy engine in one of several workers (torchrun), or a device, ``nproc`` or ``sync_bn``
            this machine cannot give.
    """
    from . import ddp, torch_engine, torch_setup

    if engine == "numpy":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise SetupError("argument --engine: this process is one of several workers (torchrun); the NumPy "
                             "engine trains in one process, so pass --engine torch")
        return None
    try:
        chosen = torch_engine.resolve_device(device)
        if launches_workers(nproc):
            ddp.check_workers(nproc, chosen, step_memory)
        torch_engine.check_sync_bn(sync_bn, chosen)
    except torch_setup.EngineError as error:
        raise SetupError(str(error)) from None
    return chosen


def launches_workers(nproc: int) -> bool:
    """Whether this process starts ``nproc`` workers (rather than being one of them, or training alone)."""
    from .torch_engine import is_worker

    return nproc > 1 and not is_worker()


def launch_workers(argv: list[str], nproc: int):
    """Run ``volnet *argv`` as ``nproc`` DDP workers; their :class:`~volnet.interop.ddp.Workers`."""
    from .ddp import launch

    return launch(argv, nproc)


def open_engine(device: str, sync_bn: bool = False):
    """The :class:`~volnet.interop.torch_engine.TorchEngine` on ``device``; in a worker, it joins its group."""
    from .torch_engine import TorchEngine, is_worker

    return TorchEngine(device, distributed=is_worker(), sync_bn=sync_bn)


def worker_step_memory(arch: str, batch_size: int, nproc: int, optimizer: str) -> int:
    """The training step's memory in one of ``nproc`` workers, at its share of the batch (volnet.analysis),
    where the architecture alone gives the input (a zoo name, ``INPUT[HxWxD]``); 0 where only the data would."""
    from ..analysis import analyze
    from ..zoo import build_any

    try:
        net = build_any(arch, allocate=False)
    except (ValueError, TypeError):  # notation without INPUT[...], unknown names: the workers will say so
        return 0
    memory = analyze(net, batch=-(-batch_size // nproc), optimizer=optimizer).memory("train")
    return memory.total + memory.params  # the volnet net's weights beside PyTorch's
