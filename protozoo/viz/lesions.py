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
from protozoo.viz.overlay import HEATMAP_CMAP, blend_heatmap, to_display
from protozoo.viz.panel import draw_header, header_inches, header_lines, render_panel

__all__ = [
    "because_lines",
    "evidence_class",
    "lesion_panel_footer",
    "lesion_panel_title",
    "lesion_terms",
    "render_lesion_maps",
    "render_lesion_panel",
]

TILE_INCHES = 2.3
BAR_INCHES = 2.2  # height of the bar chart
TILE_TITLE_INCHES = 0.5  # the tiles' two-line titles
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
        raise ValueError(
            f"render_lesion_maps draws lesion-head explanations, got one of a {explanation.family!r} "
            "model; use render_panel"
        )
    lesions = explanation.lesions
    columns = 1 + len(lesions)
    width = columns * TILE_INCHES + 0.6
    lines = header_lines(explanation, _title(explanation), wrap=round(width * 9.5))
    top = header_inches(len(lines)) + TILE_TITLE_INCHES
    height = top + TILE_INCHES + 0.5 + BAR_INCHES + 0.6
    fig = Figure(figsize=(width, height), dpi=dpi)
    draw_header(fig, lines, explanation, FONT_SIZE)
    grid = fig.add_gridspec(
        2,
        columns + 1,
        width_ratios=[1] * columns + [0.08],
        height_ratios=[TILE_INCHES, BAR_INCHES],
        left=0.02,
        right=0.94,
        top=1 - top / height,
        bottom=0.6 / height,
        wspace=0.06,
        hspace=0.35,
    )
    display = to_display(explanation.image, explanation.mean, explanation.std)  # (H, W, 3)
    image_ax = fig.add_subplot(grid[0, 0])
    image_ax.imshow(display, interpolation="lanczos")
    image_ax.set_title("fundus image", fontsize=FONT_SIZE)
    for col, lesion in enumerate(lesions, start=1):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(blend_heatmap(display, lesion.lesion_map.numpy(), value_range=(0.0, 1.0)), interpolation="lanczos")
        state = "found" if lesion.found else "not found"
        ax.set_title(
            f"{lesion.name.replace('_', ' ')}\np = {lesion.probability:.2f} ({state})",
            fontsize=FONT_SIZE,
            fontweight="bold" if lesion.found else "normal",
        )
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    colorbar = fig.colorbar(
        ScalarMappable(Normalize(0, 1), matplotlib.colormaps[HEATMAP_CMAP]), cax=fig.add_subplot(grid[0, -1])
    )
    colorbar.set_label("lesion evidence (scaled per image)", fontsize=FONT_SIZE - 1)
    _draw_bars(fig.add_subplot(grid[1, 1:-1]), explanation)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def _title(explanation: Explanation) -> str:
    return "\n".join(because_lines(explanation))


def _name(lesion: Any) -> str:
    return lesion.name.replace("_", " ")


def evidence_class(explanation: Explanation) -> int:
    """The class whose lesion evidence a lesion picture shows: the explained class, unless it takes
    none (the healthy class, whose diagnosis weights are 0), then the disease class of highest score."""
    weight = explanation.diagnosis_weight  # (K, L)
    c = explanation.class_idx
    if weight is None or bool((weight[c] > 0).any()):
        return c
    takers = [k for k in range(len(weight)) if bool((weight[k] > 0).any())]
    return max(takers, key=lambda k: float(explanation.class_logits[k])) if takers else c


def lesion_terms(explanation: Explanation, k: int) -> tuple[list[tuple[Any, float, float]], float]:
    """The found lesions' ``(lesion, weight, points)`` toward class k, and the points of the lesions not found."""
    weight = explanation.diagnosis_weight[k]  # (L,)
    found = [
        (lesion, float(weight[lesion.index]), float(weight[lesion.index]) * lesion.probability)
        for lesion in explanation.lesions
        if lesion.found
    ]
    rest = sum(float(weight[lesion.index]) * lesion.probability for lesion in explanation.lesions if not lesion.found)
    return found, rest


def because_lines(explanation: Explanation) -> list[str]:
    """The diagnosis in words, from the head's own weights: "AMD because: drusen 1.31 x p 0.53 = +0.69, ...".

    The healthy class takes no lesion evidence; when it is the explained class the lines say why
    the disease lost: the lesion evidence for the disease class stayed below the healthy score.
    """
    from protozoo.viz.panel import truth_text

    names = explanation.class_names or [str(k) for k in range(len(explanation.probabilities))]
    lines = [
        f"Diagnosis: {explanation.predicted_name} (probability {explanation.probability:.2f}) · {truth_text(explanation)}"
    ]
    if explanation.class_idx != explanation.predicted:
        lines.append(f"showing the evidence for {explanation.class_name}")
    k = evidence_class(explanation)
    found, rest = lesion_terms(explanation, k)
    terms = ", ".join(
        f"{_name(lesion)} {w:.2f} × p {lesion.probability:.2f} = {points:+.2f}" for lesion, w, points in found
    )
    score, bias = float(explanation.class_logits[k]), float(explanation.diagnosis_bias[k])
    composition = (
        f"{names[k]} score (logit) {score:.2f} = bias {bias:+.2f} + lesions found "
        f"{sum(points for _, _, points in found):+.2f} + lesions not found {rest:+.2f}"
    )
    free = [c for c in range(len(names)) if not bool((explanation.diagnosis_weight[c] > 0).any())]
    if k == explanation.class_idx:
        lines.append(f"{names[k]} because: {terms}" if found else f"{names[k]} although no lesion is found")
        lines.append(composition)
    else:
        c = explanation.class_idx
        lines.append(
            f"{names[c]} because the lesion evidence for {names[k]} is too weak"
            + (f" ({terms})" if found else " (no lesion found)")
        )
        lines.append(f"{composition} < {names[c]} score {float(explanation.class_logits[c]):.2f}")
    for c in free:
        lines.append(
            f"{names[c]} takes no lesion evidence (no lesion is evidence for {names[c]}): its score is its "
            f"bias {float(explanation.diagnosis_bias[c]):.2f}"
        )
    return lines


def _draw_bars(ax, explanation: Explanation) -> None:
    """Horizontal bars: each lesion's points (weight x probability) toward the evidence class, then its bias."""
    lesions = explanation.lesions
    k = evidence_class(explanation)
    names = explanation.class_names or [str(c) for c in range(len(explanation.probabilities))]
    weight = explanation.diagnosis_weight[k]  # (L,)
    labels = [
        f"{_name(lesion)}  ({float(weight[lesion.index]):.2f} × p {lesion.probability:.2f})" for lesion in lesions
    ]
    values = [float(weight[lesion.index]) * lesion.probability for lesion in lesions] + [
        float(explanation.diagnosis_bias[k])
    ]
    colors = [FOUND_COLOR if lesion.found else ABSENT_COLOR for lesion in lesions] + ["white"]
    rows = list(range(len(values)))[::-1]  # first lesion on top
    ax.barh(rows, values, color=colors, edgecolor="black", linewidth=0.6)
    ax.set_yticks(rows, labels + ["bias"], fontsize=FONT_SIZE - 1)
    ax.axvline(0, color="black", linewidth=0.8)
    for row, value in zip(rows, values):
        ax.text(
            value, row, f" {value:+.2f} ", va="center", ha="left" if value >= 0 else "right", fontsize=FONT_SIZE - 1
        )
    low, high = min(0.0, *values), max(0.0, *values)
    pad = 0.25 * max(high - low, 1e-6)
    ax.set_xlim(low - (pad if low < 0 else 0), high + pad)
    ax.set_title(
        f"points toward {names[k]}: they add up to its score (logit) {float(explanation.class_logits[k]):.2f}, "
        "which the diagnosis compares with the other classes' scores",
        fontsize=FONT_SIZE,
    )
    ax.set_xlabel("points (diagnosis weight × lesion probability)", fontsize=FONT_SIZE - 1)
    ax.spines[["top", "right"]].set_visible(False)


def lesion_panel_title(explanation: Explanation) -> str:
    """The lesion head's panel title: the diagnosis from the lesions (:func:`because_lines`), then what the rows are."""
    return "\n".join(
        because_lines(explanation)
        + ["Rows: the found lesions' top prototypes; their points go to the lesion's own logit (sums in the last row)"]
    )


def lesion_panel_footer(explanation: Explanation) -> str:
    """Each found lesion's logit as the shown rows' points + the other prototypes' + the lesion bias."""
    lines = []
    for lesion in explanation.lesions or []:
        if not lesion.found:
            continue
        shown = sum(ev.contribution for ev in explanation.prototypes if ev.class_idx == lesion.index)
        others = lesion.logit - lesion.lesion_bias - shown
        lines.append(
            f"{_name(lesion)} logit {lesion.logit:.2f} = rows {shown:+.2f} + other prototypes {others:+.2f} "
            f"+ bias {lesion.lesion_bias:+.2f} (p {lesion.probability:.2f})"
        )
    if lines:
        return "\n".join(lines)
    likeliest = max(explanation.lesions or [], key=lambda lesion: lesion.probability, default=None)
    return "no lesion found: no rows" + (
        "" if likeliest is None else f"\n(likeliest: {_name(likeliest)}, p {likeliest.probability:.2f})"
    )


def render_lesion_panel(
    explanation: Explanation, sources: Any = None, *, path: str | Path | None = None, dpi: int = 100
) -> Figure:
    """The lesion head's local explanation panel: :func:`~protozoo.viz.panel.render_panel` with the
    found lesions' top prototypes as rows and the diagnosis over lesions as its title."""
    return render_panel(
        explanation,
        sources,
        path=path,
        dpi=dpi,
        title=lesion_panel_title(explanation),
        footer=lesion_panel_footer(explanation),
    )
