"""Pictures of what a network computes, as arrays, and the report page that lays them out.

* :mod:`volnet.viz.pictures`  colour maps, grids of depth slices and filters, PNG files
* :mod:`volnet.viz.explain`   activations, saliency, occlusion, Grad-CAM, sliding-window maps
* :mod:`volnet.viz.svg`       training curves and the architecture drawn as SVG
* :mod:`volnet.viz.conv_demo` the notes' CONV demo, term by term
* :mod:`volnet.viz.report`    the self-contained HTML report (``volnet report``)
"""

from .conv_demo import conv_demo
from .explain import activations, grad_cam, occlusion, saliency, sliding_map
from .heatmap import heatmap_overlay
from .pictures import Picture, activation_grid, blend, colorize, filter_grid, save_png

__all__ = ["heatmap_overlay", "activations", "saliency", "occlusion", "grad_cam", "sliding_map", "conv_demo",
           "activation_grid", "filter_grid", "blend", "colorize", "save_png", "Picture"]
