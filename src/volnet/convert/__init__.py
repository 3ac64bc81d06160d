"""FC <-> CONV conversion (the notes' "Converting FC Layers to CONV Layers")."""

from .fc_conv import conv_to_fc, fc_to_conv, score_map_geometry
from .sliding import slide, sliding_size

__all__ = ["fc_to_conv", "conv_to_fc", "score_map_geometry", "slide", "sliding_size"]
