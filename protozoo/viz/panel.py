"""The local explanation panel, laid out as the ProtoPNet paper's "this looks like that" figure.

One row per top prototype: the test image | its similarity heatmap blended over the image | the
test image with the top-5% box | the prototype's source patch | similarity, weight, contribution.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from protozoo.explanation import Explanation, PrototypeEvidence
from protozoo.family import list_families
from protozoo.viz.gallery import draw_prototype, find_sources, short_id
from protozoo.viz.overlay import blend_heatmap, draw_box, to_display

__all__ = ["PANEL_COLUMNS", "panel_size", "render_panel"]

PANEL_COLUMNS = ("test image", "where it looks alike", "top 5% of the match", "prototype's training patch", "evidence")
PANEL_TILE_INCHES = 2.4  # each image tile is square
PANEL_TEXT_INCHES = 2.6  # width of the text column
PANEL_GAP_INCHES = 0.1  # between columns and around the figure
PANEL_TITLE_INCHES = 0.75  # a two-line figure title
TITLE_LINE_INCHES = 0.3  # each further title line
PANEL_HEADER_INCHES = 0.3  # the column headers
PANEL_ROW_GAP_INCHES = 0.3  # above each row, for the source image's id
FONT_SIZE = 11


def panel_size(rows: int, title_lines: int = 2) -> tuple[float, float]:
    """(width, height) in inches of a panel with ``rows`` prototypes."""
    width = 4 * PANEL_TILE_INCHES + PANEL_TEXT_INCHES + 6 * PANEL_GAP_INCHES
    height = _title_inches(title_lines) + PANEL_HEADER_INCHES + rows * (PANEL_ROW_GAP_INCHES + PANEL_TILE_INCHES)
    return width, height + PANEL_GAP_INCHES


def _title_inches(lines: int) -> float:
    return PANEL_TITLE_INCHES + max(0, lines - 2) * TITLE_LINE_INCHES


def render_panel(explanation: Explanation, sources: Any = None, *, path: str | Path | None = None, dpi: int = 100,
                 title: str | None = None) -> Figure:
    """Draw one explanation: one row of five axes per prototype of the explanation.

    The figure is :func:`panel_size` inches (times ``dpi`` pixels when saved).

    Args:
        explanation: From :func:`protozoo.explain`.
        sources: Where to fetch the prototypes' source images (see
            :func:`protozoo.viz.gallery.find_sources`); without them the source column shows each
            prototype's self-similarity map, or says that the model was never pushed.
        path: Save the figure here as PNG as well.
        dpi: Resolution of the saved PNG.
        title: The figure title (default: the prediction and how the score adds up); a family's
            panel passes its own (the lesion head's reads the diagnosis over lesions).

    Returns:
        The figure.
    """
    title = title or _title(explanation)
    lines = title.count("\n") + 1
    width, height = panel_size(len(explanation.prototypes), lines)
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.suptitle(title, fontsize=FONT_SIZE + 2, fontweight="bold", y=1 - 0.1 / height, va="top")
    lefts = [PANEL_GAP_INCHES + col * (PANEL_TILE_INCHES + PANEL_GAP_INCHES) for col in range(5)]
    widths = [PANEL_TILE_INCHES] * 4 + [PANEL_TEXT_INCHES]
    header_y = 1 - (_title_inches(lines) + PANEL_HEADER_INCHES / 2) / height
    for left, w, header in zip(lefts, widths, PANEL_COLUMNS):
        fig.text((left + w / 2) / width, header_y, header, ha="center", va="center", fontsize=FONT_SIZE + 1, fontweight="bold")
    display = to_display(explanation.image, explanation.mean, explanation.std)  # (H, W, 3)
    images = find_sources(sources, [ev.source["image_id"] for ev in explanation.prototypes if ev.source is not None],
                          list_families().get(explanation.family))
    for r, evidence in enumerate(explanation.prototypes):
        top = _title_inches(lines) + PANEL_HEADER_INCHES + r * (PANEL_ROW_GAP_INCHES + PANEL_TILE_INCHES) + PANEL_ROW_GAP_INCHES
        bottom = (height - top - PANEL_TILE_INCHES) / height
        axes = [fig.add_axes((left / width, bottom, w / width, PANEL_TILE_INCHES / height)) for left, w in zip(lefts, widths)]
        _draw_row(axes, display, evidence, images, explanation)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def _title(explanation: Explanation) -> str:
    title = f"Predicted: {explanation.predicted_name} (probability {explanation.probability:.2f})"
    if explanation.class_idx != explanation.predicted:
        title += f"; showing the evidence for {explanation.class_name}"
    total = len(explanation.contributions)
    return (
        f"{title}\n{explanation.class_name} score (logit) {explanation.logit:.2f} = sum of the points of all {total} "
        f"prototypes; the top {len(explanation.prototypes)} are shown"
    )


def _wrap(name: str, width: int = 26) -> str:
    """A class name on lines of at most ``width`` characters, broken after ``+``, ``_`` or spaces."""
    lines = [""]
    for token in re.findall(r"[^+_ ]+[+_ ]?", name) or [name]:
        if lines[-1] and len(lines[-1]) + len(token) > width:
            lines.append("")
        lines[-1] += token
    return "\n".join(lines)


def _draw_row(axes: list, display: Any, evidence: PrototypeEvidence, images: dict, explanation: Explanation) -> None:
    plain, heat, boxed, source, text = axes
    plain.imshow(display, interpolation="lanczos")
    heat.imshow(blend_heatmap(display, evidence.heatmap.numpy()), interpolation="lanczos")
    boxed.imshow(display, interpolation="lanczos")
    draw_box(boxed, evidence.box)
    if evidence.source is None:
        source.text(0.5, 0.5, "not pushed:\nno source patch", ha="center", va="center", fontsize=FONT_SIZE)
        note = ""
    else:
        image = images.get(str(evidence.source["image_id"]))
        note = draw_prototype(source, evidence.source, image, mean=explanation.mean, std=explanation.std, zoom=True)
    source_id = "" if evidence.source is None else evidence.source["image_id"]
    source.set_title(short_id(source_id), fontsize=FONT_SIZE - 2)
    if note:
        source.text(0.5, 0.03, note, transform=source.transAxes, ha="center", va="bottom", fontsize=FONT_SIZE - 2,
                    color="white", bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"})
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    text.axis("off")
    text.text(
        0.04, 0.5,
        f"prototype {evidence.index} of {explanation.prototype_kind}\n"
        f"{_wrap(evidence.class_name)}\n\n"
        f"similarity {evidence.similarity:7.3f}\n"
        f"× weight   {evidence.weight:+7.3f}\n"
        f"= points   {evidence.contribution:+7.3f}",
        ha="left", va="center", fontsize=FONT_SIZE, family="monospace",
    )
