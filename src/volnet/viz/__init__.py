"""Pictures of what a network computes."""

from .heatmap import heatmap_overlay

__all__ = ["heatmap_overlay"]
