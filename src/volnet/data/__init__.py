"""Data sets as ``(N, H, W, D)`` float32 images with integer labels."""

from .bundled import Dataset, load

__all__ = ["Dataset", "load"]
