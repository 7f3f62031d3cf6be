"""Lesion maps of a lesion-head explanation over a fundus photograph, and the diagnosis they add up to.

Top row: the fundus | one map per lesion type blended over it, its probability in the title.
Bottom: a bar per lesion, its points toward the explained diagnosis (weight x probability), and
the bias, which add up to the diagnosis score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from protozoo.explanation import Explanation
from protozoo.viz.panel import render_panel
from protozoo.viz.overlay import HEATMAP_CMAP, blend_heatmap, to_display

__all__ = ["lesion_panel_title", "render_lesion_maps", "render_lesion_panel"]

TILE_INCHES = 2.3
BAR_INCHES = 2.2  # height of the bar chart
TITLE_INCHES = 1.2  # the two-line figure title and the tiles' two-line titles
FONT_SIZE = 10
FOUND_COLOR = "#c0392b"  # bars of the lesions found
ABSENT_COLOR = "#95a5a6"  # bars of the lesions not found, and of the bias


def render_lesion_maps(explanation: Explanation, *, path: str | Path | None = None, dpi: int = 100) -> Figure:
    """Draw a lesion-head explanation: the image, one blended map per lesion, the diagnosis bars.

    The maps are blended on one scale, [0, 1] as ``model.lesion_maps`` scales an image's maps
    together, so a weak lesion map stays faint next to a strong one (a colour bar gives the scale).

    Args:
        explanation: From :func:`protozoo.explain` on a lesion model (``explanation.lesions`` set).
        path: Save the figure here as PNG as well.
        dpi: Resolution of the saved PNG.

    Returns:
        The figure: 1 + L image axes, the colour bar and the bar chart.
    """
    if explanation.lesions is None:
        raise ValueError(f"render_lesion_maps draws lesion-head explanations, got one of a {explanation.family!r} "
                         "model; use render_panel")
    lesions = explanation.lesions
    columns = 1 + len(lesions)
    width, height = columns * TILE_INCHES + 0.6, TITLE_INCHES + TILE_INCHES + 0.5 + BAR_INCHES + 0.6
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.suptitle(_title(explanation), fontsize=FONT_SIZE + 2, fontweight="bold", y=1 - 0.1 / height, va="top")
    grid = fig.add_gridspec(
        2, columns + 1, width_ratios=[1] * columns + [0.08], height_ratios=[TILE_INCHES, BAR_INCHES],
        left=0.02, right=0.94, top=1 - TITLE_INCHES / height, bottom=0.6 / height, wspace=0.06, hspace=0.35,
    )
    display = to_display(explanation.image, explanation.mean, explanation.std)  # (H, W, 3)
    image_ax = fig.add_subplot(grid[0, 0])
    image_ax.imshow(display, interpolation="lanczos")
    image_ax.set_title("fundus image", fontsize=FONT_SIZE)
    for col, lesion in enumerate(lesions, start=1):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(blend_heatmap(display, lesion.lesion_map.numpy(), value_range=(0.0, 1.0)), interpolation="lanczos")
        state = "found" if lesion.found else "not found"
        ax.set_title(f"{lesion.name.replace('_', ' ')}\np = {lesion.probability:.2f} ({state})", fontsize=FONT_SIZE,
                     fontweight="bold" if lesion.found else "normal")
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    colorbar = fig.colorbar(ScalarMappable(Normalize(0, 1), matplotlib.colormaps[HEATMAP_CMAP]), cax=fig.add_subplot(grid[0, -1]))
    colorbar.set_label("lesion evidence (scaled per image)", fontsize=FONT_SIZE - 1)
    _draw_bars(fig.add_subplot(grid[1, 1:-1]), explanation)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def _title(explanation: Explanation) -> str:
    title = f"Diagnosis: {explanation.predicted_name} (probability {explanation.probability:.2f})"
    if explanation.class_idx != explanation.predicted:
        title += f"; showing the evidence for {explanation.class_name}"
    found = [lesion.name.replace("_", " ") for lesion in explanation.lesions if lesion.found]
    return f"{title}\nlesions found: {', '.join(found) if found else 'none'}"


def _draw_bars(ax, explanation: Explanation) -> None:
    """Horizontal bars: each lesion's points (weight x probability) toward the class, then the bias."""
    lesions = explanation.lesions
    labels = [f"{lesion.name.replace('_', ' ')}  ({lesion.weight:.2f} × p {lesion.probability:.2f})" for lesion in lesions]
    values = [lesion.contribution for lesion in lesions] + [explanation.bias]
    colors = [FOUND_COLOR if lesion.found else ABSENT_COLOR for lesion in lesions] + ["white"]
    rows = list(range(len(values)))[::-1]  # first lesion on top
    ax.barh(rows, values, color=colors, edgecolor="black", linewidth=0.6)
    ax.set_yticks(rows, labels + ["bias"], fontsize=FONT_SIZE - 1)
    ax.axvline(0, color="black", linewidth=0.8)
    for row, value in zip(rows, values):
        ax.text(value, row, f" {value:+.2f} ", va="center", ha="left" if value >= 0 else "right", fontsize=FONT_SIZE - 1)
    low, high = min(0.0, *values), max(0.0, *values)
    pad = 0.25 * max(high - low, 1e-6)
    ax.set_xlim(low - (pad if low < 0 else 0), high + pad)
    ax.set_title(f"points toward {explanation.class_name}: they add up to its score (logit) {explanation.logit:.2f}, "
                 "which the diagnosis compares with the other classes' scores", fontsize=FONT_SIZE)
    ax.set_xlabel("points (diagnosis weight × lesion probability)", fontsize=FONT_SIZE - 1)
    ax.spines[["top", "right"]].set_visible(False)


def lesion_panel_title(explanation: Explanation) -> str:
    """The lesion head's panel title: the diagnosis as bias + weight x P(lesion) of the lesions found."""
    title = f"Predicted: {explanation.predicted_name} (probability {explanation.probability:.2f})"
    if explanation.class_idx != explanation.predicted:
        title += f"; showing the evidence for {explanation.class_name}"
    found = [lesion for lesion in explanation.lesions or [] if lesion.found]
    terms = " + ".join(f"{lesion.name} {lesion.weight:.2f} x {lesion.probability:.2f}" for lesion in found)
    return (
        f"{title}, from the lesions found; rows: their top prototypes (points go to the lesion's logit)\n"
        f"{explanation.class_name} logit {explanation.logit:.2f} = bias {explanation.bias:+.2f} + weight x P(lesion) of "
        f"the lesions found:\n{terms or 'none'} (+ the lesions not found)"
    )


def render_lesion_panel(explanation: Explanation, sources: Any = None, *, path: str | Path | None = None,
                        dpi: int = 100) -> Figure:
    """The lesion head's local explanation panel: :func:`~protozoo.viz.panel.render_panel` with the
    found lesions' top prototypes as rows and the diagnosis over lesions as its title."""
    return render_panel(explanation, sources, path=path, dpi=dpi, title=lesion_panel_title(explanation))
