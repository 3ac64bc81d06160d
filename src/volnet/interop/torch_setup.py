"""What the PyTorch engine and its DDP launcher both start from: PyTorch, or the line that installs it, and the
error for an engine that cannot run as asked.

:mod:`volnet.interop.torch_engine` and :mod:`volnet.interop.ddp` import it; it imports neither, and PyTorch
only when :func:`require_torch` is called.
"""

from __future__ import annotations

# The CPU build: a bare `pip install torch` pulls the CUDA build, several GB.
INSTALL_CPU_TORCH = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"


class EngineError(ValueError):
    """The engine cannot run as asked: no CUDA GPU for ``--device cuda``, SyncBatchNorm on CPU..."""


def require_torch():
    """``torch``, or an ImportError with the line that installs the CPU build."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"--engine torch needs PyTorch, which is not installed: {INSTALL_CPU_TORCH} (the CPU "
                          "build; a bare pip install torch pulls the CUDA build, several GB)") from error
    return torch
