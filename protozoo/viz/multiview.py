"""The CC/MLO explanation panel of a multi-view (two-view mammography) model.

One row per top prototype: CC | its similarity heatmap over CC with the top-5% box | MLO | the
same over MLO | the prototype's training patch | the numbers. The view the prototype fired in (its
breast-level similarity) is marked; the header gives the intended use, the breast-level
prediction (and true label), how its score splits between the single-view prototypes and the
CC-MLO co-occurrence block, and the out-of-distribution note; the last row adds the other
prototypes and the co-occurrence block, so the rows sum to the score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from protozoo.explanation import Explanation, ViewEvidence
from protozoo.family import list_families
from protozoo.viz.gallery import draw_prototype, find_sources, short_id
from protozoo.viz.overlay import HEATMAP_CMAP, blend_heatmap, draw_box, to_display
from protozoo.viz.panel import draw_header, header_inches, header_lines

__all__ = ["MULTIVIEW_COLUMNS", "SOURCE_COLUMN", "multiview_footer", "multiview_title", "render_multiview_panel"]

MULTIVIEW_COLUMNS = ("{view}", "{view}: match\n(top 5% boxed)")  # per view: the image, then heatmap + box
SOURCE_COLUMN = "prototype's\ntraining patch"
TILE_HEIGHT_INCHES = 2.6
TEXT_INCHES = 2.7
GAP_INCHES = 0.12
HEADER_INCHES = 0.45  # two-line column headers
ROW_GAP_INCHES = 0.35  # above each tile, for its title
FOOTER_INCHES = 1.0  # the "all other prototypes" row and the colour bar
FONT_SIZE = 10


def render_multiview_panel(
    explanation: Explanation, sources: Any = None, *, path: str | Path | None = None, dpi: int = 100
) -> Figure:
    """Draw a multi-view explanation: one row of six axes per top prototype, then the sum row.

    Columns: CC | CC heatmap with box | MLO | MLO heatmap with box | the prototype's training patch
    | evidence. Grayscale views are windowed gray (:func:`~protozoo.viz.overlay.to_display`); a
    missing view's tiles say so. Every heatmap is on the one colour scale of the panel.

    Args:
        explanation: From :func:`protozoo.explain` on a multi-view model (``view_images`` set).
        sources: Where to fetch the prototypes' source images (see
            :func:`protozoo.viz.gallery.find_sources`: the dataset the model was pushed on, whose
            breasts' views have ids ``"<breast>/cc"``...); without them the source column shows
            each prototype's self-similarity map, or says that the model was never pushed.
        path: Save the figure here as PNG as well.
        dpi: Resolution of the saved PNG.

    Returns:
        The figure.
    """
    if explanation.view_images is None:
        raise ValueError(
            f"render_multiview_panel draws multi-view explanations, got one of a {explanation.family!r} "
            "model; use render_panel"
        )
    views = ("cc", "mlo")
    shown = {
        v: to_display(x, explanation.mean, explanation.std) for v, x in explanation.view_images.items()
    }  # (H, W, 3)
    height, width = next(iter(shown.values())).shape[:2]
    tile_w = TILE_HEIGHT_INCHES * width / height
    widths = [tile_w] * 4 + [TILE_HEIGHT_INCHES, TEXT_INCHES]
    lefts = list(np.cumsum([GAP_INCHES] + [w + GAP_INCHES for w in widths[:-1]]))
    rows = len(explanation.prototypes)
    fig_w = sum(widths) + 7 * GAP_INCHES
    lines = header_lines(explanation, multiview_title(explanation), wrap=round(fig_w * 9.5))
    top = header_inches(len(lines))
    fig_h = top + HEADER_INCHES + rows * (ROW_GAP_INCHES + TILE_HEIGHT_INCHES) + FOOTER_INCHES + GAP_INCHES
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    draw_header(fig, lines, explanation, FONT_SIZE)
    headers = [h.format(view=v.upper()) for v in views for h in MULTIVIEW_COLUMNS] + [SOURCE_COLUMN, "evidence"]
    header_y = 1 - (top + HEADER_INCHES / 2) / fig_h
    for left, w, header in zip(lefts, widths, headers):
        fig.text(
            (left + w / 2) / fig_w, header_y, header, ha="center", va="center", fontsize=FONT_SIZE, fontweight="bold"
        )
    family = list_families().get(explanation.family)
    images = find_sources(
        sources, [ev.source["image_id"] for ev in explanation.prototypes if ev.source is not None], family
    )
    scale = _heatmap_range(explanation.prototypes)
    for r, evidence in enumerate(explanation.prototypes):
        row_top = top + HEADER_INCHES + r * (ROW_GAP_INCHES + TILE_HEIGHT_INCHES) + ROW_GAP_INCHES
        bottom = (fig_h - row_top - TILE_HEIGHT_INCHES) / fig_h
        axes = [
            fig.add_axes((left / fig_w, bottom, w / fig_w, TILE_HEIGHT_INCHES / fig_h))
            for left, w in zip(lefts, widths)
        ]
        for v, view in enumerate(views):
            _draw_view(axes[2 * v], axes[2 * v + 1], view, shown.get(view), evidence, scale)
        _draw_source(axes[4], evidence, images, explanation)
        _draw_text(axes[5], evidence, explanation)
    bar = fig.add_axes((lefts[1] / fig_w, (GAP_INCHES + 0.45) / fig_h, tile_w / fig_w, 0.16 / fig_h))
    colorbar = fig.colorbar(
        ScalarMappable(Normalize(*scale), matplotlib.colormaps[HEATMAP_CMAP]), cax=bar, orientation="horizontal"
    )
    colorbar.set_label("similarity: one colour scale for all rows and views", fontsize=FONT_SIZE - 2)
    colorbar.ax.tick_params(labelsize=FONT_SIZE - 3)
    fig.text(
        lefts[2] / fig_w,
        (GAP_INCHES + FOOTER_INCHES / 2) / fig_h,
        multiview_footer(explanation),
        ha="left",
        va="center",
        fontsize=FONT_SIZE,
        family="monospace",
    )
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def multiview_title(explanation: Explanation) -> str:
    """The breast-level decision, what the rows are, and how the score splits between the two last-layer blocks."""
    from protozoo.viz.panel import truth_text

    title = (
        f"Breast-level prediction: {explanation.predicted_name} (probability {explanation.probability:.2f}) · "
        f"{truth_text(explanation)}"
    )
    if explanation.class_idx != explanation.predicted:
        title += f"; showing the evidence for {explanation.class_name}"
    single = float(explanation.contributions.sum())
    co = float(explanation.cooccurrence_contributions.sum())
    missing = [v.upper() for v in ("cc", "mlo") if v not in explanation.view_images]
    note = f"\n{' and '.join(missing)} view missing: no co-occurrence evidence" if missing else ""
    return (
        f"{title}\n{explanation.class_name} score (logit) {explanation.logit:.2f} = {single:.2f} from the prototypes "
        f"(each in its best view) + {co:.2f} from CC-MLO co-occurrence{note}\n"
        f"Rows: the {len(explanation.prototypes)} prototypes with the most points for {explanation.class_name}; "
        f"the other {len(explanation.contributions) - len(explanation.prototypes)} and the co-occurrence block in the last row"
    )


def multiview_footer(explanation: Explanation) -> str:
    """The shown rows' points + every other prototype's + co-occurrence = the breast-level score."""
    shown = sum(ev.contribution for ev in explanation.prototypes)
    others = float(explanation.contributions.sum()) - shown
    co = float(explanation.cooccurrence_contributions.sum())
    count = len(explanation.contributions) - len(explanation.prototypes)
    return (
        f"all {count} other prototypes: points {others:+.2f}\n"
        f"CC-MLO co-occurrence (all prototypes): {co:+.2f}\n"
        f"sum: rows {shown:+.2f} + others {others:+.2f} + co-occurrence {co:+.2f}\n"
        f"  = {shown + others + co:.2f} = {explanation.class_name} score (logit)"
    )


def _heatmap_range(prototypes: list[ViewEvidence]) -> tuple[float, float]:
    """One colour scale: 0 (or the lowest value) to the highest value of every row's every view."""
    maps = [m for ev in prototypes for m in ev.view_heatmaps.values()]
    if not maps:
        return 0.0, 1.0
    low = min(0.0, min(float(m.min()) for m in maps))
    return low, max(max(float(m.max()) for m in maps), low + 1e-6)


def _draw_source(ax: Axes, evidence: ViewEvidence, images: dict, explanation: Explanation) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if evidence.source is None:
        ax.text(
            0.5,
            0.5,
            "not pushed:\nno source patch",
            ha="center",
            va="center",
            fontsize=FONT_SIZE,
            transform=ax.transAxes,
        )
        return
    note = draw_prototype(
        ax,
        evidence.source,
        images.get(str(evidence.source["image_id"])),
        mean=explanation.mean,
        std=explanation.std,
        zoom=True,
    )
    ax.set_title(short_id(evidence.source["image_id"], 26), fontsize=FONT_SIZE - 1)
    if note:
        ax.text(
            0.5,
            0.03,
            note,
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=FONT_SIZE - 2,
            color="white",
            bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"},
        )


def _draw_view(
    plain: Axes, heat: Axes, view: str, display: np.ndarray | None, evidence: ViewEvidence, scale: tuple[float, float]
) -> None:
    for ax in (plain, heat):
        ax.set_xticks([])
        ax.set_yticks([])
    if display is None:
        for ax in (plain, heat):
            ax.text(
                0.5,
                0.5,
                f"no {view.upper()} view",
                ha="center",
                va="center",
                fontsize=FONT_SIZE,
                transform=ax.transAxes,
            )
        return
    plain.imshow(display, interpolation="lanczos")
    heat.imshow(
        blend_heatmap(display, evidence.view_heatmaps[view].numpy(), value_range=scale), interpolation="lanczos"
    )
    draw_box(heat, evidence.view_boxes[view])
    counted = evidence.view == view
    heat.set_title(
        f"similarity {evidence.view_similarities[view]:.2f}" + (" (counted)" if counted else ""),
        fontsize=FONT_SIZE,
        fontweight="bold" if counted else "normal",
    )


def _draw_text(ax: Axes, evidence: ViewEvidence, explanation: Explanation) -> None:
    ax.axis("off")
    co = explanation.cooccurrence_contributions
    co_line = f"\nco-occurrence  {float(co[evidence.index]):+6.2f}" if explanation.cooccurrence else ""
    ax.text(
        0.04,
        0.5,
        f"prototype {evidence.index} of class\n{evidence.class_name}\nfired in {evidence.view.upper()}\n\n"
        f"similarity {evidence.similarity:7.3f}\n"
        f"× weight   {evidence.weight:+7.3f}\n"
        f"= points   {evidence.contribution:+7.3f}{co_line}",
        ha="left",
        va="center",
        fontsize=FONT_SIZE,
        family="monospace",
    )
