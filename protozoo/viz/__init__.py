"""Pictures of prototype models for people: prototype galleries, explanation panels (ProtoPNet,
CC/MLO multi-view, lesion maps over a fundus), HTML reports. Each picture and report of a model
whose intended use is known carries it as a banner (:mod:`protozoo.intended_use`), every panel its
input's out-of-distribution note (:mod:`protozoo.ood`), and every panel's rows add up, with an
"all other prototypes" row, to the score it names.

Matplotlib with figures built directly (``matplotlib.figure.Figure``, no pyplot state), so they
render on the Agg backend, headless and in threads.
"""

from protozoo.viz.gallery import find_sources, render_gallery
from protozoo.viz.lesions import render_lesion_maps
from protozoo.viz.multiview import render_multiview_panel
from protozoo.viz.overlay import blend_heatmap, crop, draw_box, to_display, window
from protozoo.viz.panel import panel_size, render_panel
from protozoo.viz.report import png_data_uri, render_report

__all__ = [
    "blend_heatmap",
    "crop",
    "draw_box",
    "find_sources",
    "panel_size",
    "png_data_uri",
    "render_gallery",
    "render_lesion_maps",
    "render_multiview_panel",
    "render_panel",
    "render_report",
    "to_display",
    "window",
]
