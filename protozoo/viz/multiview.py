"""The CC/MLO explanation panel of a multi-view (two-view mammography) model.

One row per top prototype: CC | its similarity heatmap over CC with the top-5% box | MLO | the
same over MLO | the numbers. The view the prototype fired in (its breast-level similarity) is
marked; the title gives the breast-level prediction and how its score splits between the
single-view prototypes and the CC-MLO co-occurrence block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from protozoo.explanation import Explanation, ViewEvidence
from protozoo.viz.overlay import blend_heatmap, draw_box, to_display

__all__ = ["MULTIVIEW_COLUMNS", "render_multiview_panel"]

MULTIVIEW_COLUMNS = ("{view}", "{view}: match\n(top 5% boxed)")  # per view: the image, then heatmap + box
TILE_HEIGHT_INCHES = 2.6
TEXT_INCHES = 2.7
GAP_INCHES = 0.12
TITLE_INCHES = 1.2  # the four-line figure title
HEADER_INCHES = 0.45  # two-line column headers
ROW_GAP_INCHES = 0.35  # above each tile, for its title
FONT_SIZE = 10


def render_multiview_panel(explanation: Explanation, sources: Any = None, *, path: str | Path | None = None,
                           dpi: int = 100) -> Figure:
    """Draw a multi-view explanation: one row of five axes per top prototype.

    Columns: CC | CC heatmap with box | MLO | MLO heatmap with box | evidence. Grayscale views are
    windowed gray (:func:`~protozoo.viz.overlay.to_display`); a missing view's tiles say so.

    Args:
        explanation: From :func:`protozoo.explain` on a multi-view model (``view_images`` set).
        sources: Accepted for the panel signature every family shares; this panel does not yet
            draw the prototypes' training patches (their ids are in ``explanation.prototypes``).
        path: Save the figure here as PNG as well.
        dpi: Resolution of the saved PNG.

    Returns:
        The figure.
    """
    if explanation.view_images is None:
        raise ValueError(f"render_multiview_panel draws multi-view explanations, got one of a {explanation.family!r} "
                         "model; use render_panel")
    views = ("cc", "mlo")
    shown = {v: to_display(x, explanation.mean, explanation.std) for v, x in explanation.view_images.items()}  # (H, W, 3)
    height, width = next(iter(shown.values())).shape[:2]
    tile_w = TILE_HEIGHT_INCHES * width / height
    widths = [tile_w] * 4 + [TEXT_INCHES]
    lefts = list(np.cumsum([GAP_INCHES] + [w + GAP_INCHES for w in widths[:-1]]))
    rows = len(explanation.prototypes)
    fig_w = sum(widths) + 6 * GAP_INCHES
    fig_h = TITLE_INCHES + HEADER_INCHES + rows * (ROW_GAP_INCHES + TILE_HEIGHT_INCHES) + GAP_INCHES
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    fig.suptitle(_title(explanation), fontsize=FONT_SIZE + 1, fontweight="bold", y=1 - 0.1 / fig_h, va="top")
    headers = [h.format(view=v.upper()) for v in views for h in MULTIVIEW_COLUMNS] + ["evidence"]
    header_y = 1 - (TITLE_INCHES + HEADER_INCHES / 2) / fig_h
    for left, w, header in zip(lefts, widths, headers):
        fig.text((left + w / 2) / fig_w, header_y, header, ha="center", va="center", fontsize=FONT_SIZE, fontweight="bold")
    for r, evidence in enumerate(explanation.prototypes):
        top = TITLE_INCHES + HEADER_INCHES + r * (ROW_GAP_INCHES + TILE_HEIGHT_INCHES) + ROW_GAP_INCHES
        bottom = (fig_h - top - TILE_HEIGHT_INCHES) / fig_h
        axes = [fig.add_axes((left / fig_w, bottom, w / fig_w, TILE_HEIGHT_INCHES / fig_h)) for left, w in zip(lefts, widths)]
        for v, view in enumerate(views):
            _draw_view(axes[2 * v], axes[2 * v + 1], view, shown.get(view), evidence)
        _draw_text(axes[4], evidence, explanation)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def _title(explanation: Explanation) -> str:
    title = f"Breast-level prediction: {explanation.predicted_name} (probability {explanation.probability:.2f})"
    if explanation.class_idx != explanation.predicted:
        title += f"; showing the evidence for {explanation.class_name}"
    single = float(explanation.contributions.sum())
    co = float(explanation.cooccurrence_contributions.sum())
    missing = [v.upper() for v in ("cc", "mlo") if v not in explanation.view_images]
    note = f"{' and '.join(missing)} view missing: no co-occurrence evidence; " if missing else ""
    return (
        f"{title}\n{explanation.class_name} score (logit) {explanation.logit:.2f}\n= {single:.2f} from the prototypes "
        f"(best view) + {co:.2f} from CC-MLO co-occurrence\n{note}top {len(explanation.prototypes)} prototypes shown"
    )


def _draw_view(plain: Axes, heat: Axes, view: str, display: np.ndarray | None, evidence: ViewEvidence) -> None:
    for ax in (plain, heat):
        ax.set_xticks([])
        ax.set_yticks([])
    if display is None:
        for ax in (plain, heat):
            ax.text(0.5, 0.5, f"no {view.upper()} view", ha="center", va="center", fontsize=FONT_SIZE, transform=ax.transAxes)
        return
    plain.imshow(display, interpolation="lanczos")
    heat.imshow(blend_heatmap(display, evidence.view_heatmaps[view].numpy()), interpolation="lanczos")
    draw_box(heat, evidence.view_boxes[view])
    counted = evidence.view == view
    heat.set_title(f"similarity {evidence.view_similarities[view]:.2f}" + (" (counted)" if counted else ""),
                   fontsize=FONT_SIZE, fontweight="bold" if counted else "normal")


def _draw_text(ax: Axes, evidence: ViewEvidence, explanation: Explanation) -> None:
    ax.axis("off")
    co = explanation.cooccurrence_contributions
    co_line = f"\nco-occurrence  {float(co[evidence.index]):+6.2f}" if explanation.cooccurrence else ""
    ax.text(
        0.04, 0.5,
        f"prototype {evidence.index} of class\n{evidence.class_name}\nfired in {evidence.view.upper()}\n\n"
        f"similarity {evidence.similarity:7.3f}\n"
        f"× weight   {evidence.weight:+7.3f}\n"
        f"= points   {evidence.contribution:+7.3f}{co_line}",
        ha="left", va="center", fontsize=FONT_SIZE, family="monospace",
    )
