"""volnet: ConvNets on 3-D activation volumes, in NumPy."""

from .shapes import ShapeError, conv_output_size, pool_output_size

__version__ = "0.1.0"
__all__ = ["ShapeError", "conv_output_size", "pool_output_size", "__version__"]
