"""volnet: ConvNets on 3-D activation volumes, in NumPy.

The pieces, bottom up: :mod:`volnet.shapes` (size arithmetic),
:mod:`volnet.ops` (stateless kernels), :mod:`volnet.layers` (parameters and
gradients), :class:`volnet.Sequential` (a network), :mod:`volnet.optim` and
:mod:`volnet.train` (learning); :func:`volnet.load` reads a trained
checkpoint into a :class:`volnet.Model` that predicts class probabilities.

Importing it changes no process-wide setting: :func:`volnet.configure` turns
them on (``volnet.configure(keep_freed_memory=True)``, see :mod:`volnet.runtime`),
as the ``volnet`` command does.

Nothing but :mod:`volnet.runtime` is imported with the package; the rest
(the size arithmetic, NumPy, the layers, Numba) loads on first use, e.g. at ``volnet.zoo`` or ``volnet.load``,
so that ``import volnet`` and ``volnet --help`` stay quick.
"""

from __future__ import annotations

import importlib

from . import runtime
from .runtime import configure

__version__ = "0.1.0"

# Names and submodules imported at their first use (see the docstring).
_LAZY = {"Sequential": "net", "SpecError": "spec", "build": "spec", "to_notation": "spec", "Model": "train.model", "load": "train.model",
         "ShapeError": "shapes", "conv_output_size": "shapes", "pool_output_size": "shapes"}
_SUBMODULES = ("analysis", "check", "convert", "data", "gradcheck", "interop", "layers", "net", "ops", "optim",
               "resources", "shapes", "spec", "train", "viz", "zoo")


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__():
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


__all__ = ["Model", "Sequential", "ShapeError", "SpecError", "build", "configure", "conv_output_size", "load",
           "pool_output_size", "to_notation", "__version__"]
