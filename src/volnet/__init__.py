"""volnet: ConvNets on 3-D activation volumes, in NumPy.

The pieces, bottom up: :mod:`volnet.shapes` (size arithmetic),
:mod:`volnet.ops` (stateless kernels), :mod:`volnet.layers` (parameters and
gradients), :class:`volnet.Sequential` (a network), :mod:`volnet.optim` and
:mod:`volnet.train` (learning).
"""

from . import runtime
from .net import Sequential
from .shapes import ShapeError, conv_output_size, pool_output_size
from .spec import SpecError, build

__version__ = "0.1.0"

runtime.configure_from_environment()
__all__ = ["Sequential", "ShapeError", "SpecError", "build", "conv_output_size", "pool_output_size", "__version__"]
