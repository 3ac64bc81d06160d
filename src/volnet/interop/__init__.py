"""Bridges to other frameworks: :func:`to_torch` and :func:`from_torch` move a network to PyTorch and back.

:mod:`volnet.interop.torch_engine` trains through that bridge (``volnet train --engine torch``), and
:mod:`volnet.interop.ddp` launches its DistributedDataParallel workers (``--nproc N``).
PyTorch is imported only when a bridge function is called or an engine made.
"""

from .torch_bridge import from_torch, to_torch

__all__ = ["to_torch", "from_torch"]
