"""The local explanation panel, laid out as the ProtoPNet paper's "this looks like that" figure.

Header: the intended-use banner of the model, the decision (with the true label when given) and,
for BRAIxProtoPNet++, every branch's probabilities and decision, then which output the rows
explain, and the out-of-distribution note. One row per top prototype: the test image | its
similarity heatmap blended over the image | the test image with the top-5% box | the prototype's
source patch | similarity, weight, points. A last row: every other prototype's points together,
so that the rows add up to the score the header names, and the one colour scale of the heatmaps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from protozoo.explanation import Explanation, PrototypeEvidence
from protozoo.family import list_families
from protozoo.viz.gallery import banner_lines, draw_prototype, find_sources, short_id, wrap_words
from protozoo.viz.overlay import HEATMAP_CMAP, blend_heatmap, draw_box, to_display

__all__ = [
    "PANEL_COLUMNS",
    "HeaderLine",
    "draw_header",
    "header_inches",
    "header_lines",
    "heatmap_range",
    "panel_size",
    "render_panel",
    "score_sum",
]

PANEL_COLUMNS = ("test image", "where it looks alike", "top 5% of the match", "prototype's training patch", "evidence")
PANEL_TILE_INCHES = 2.4  # each image tile is square
PANEL_TEXT_INCHES = 2.6  # width of the text column
PANEL_GAP_INCHES = 0.1  # between columns and around the figure
LINE_INCHES = 0.3  # each header line (a multiple of 0.1 inch: whole pixels at 60, 80, 100 dpi)
PANEL_HEADER_INCHES = 0.3  # the column headers
PANEL_ROW_GAP_INCHES = 0.3  # above each row, for the source image's id
FOOTER_INCHES = 1.0  # the "all other prototypes" row and the colour bar
FONT_SIZE = 11
WRAP = 118  # characters per header line
BANNER_COLOR = "#b03a2e"  # the intended-use banner
OOD_COLOR = "#b03a2e"  # a flagged input's note (gray when in distribution or unknown)


@dataclass
class HeaderLine:
    """One line above the rows: ``kind`` is ``"banner"``, ``"title"``, ``"line"`` or ``"ood"``."""

    text: str
    kind: str = "line"


def panel_size(rows: int, title_lines: int = 2) -> tuple[float, float]:
    """(width, height) in inches of a panel with ``rows`` prototypes and ``title_lines`` header lines
    (``len(header_lines(explanation))``)."""
    width = 4 * PANEL_TILE_INCHES + PANEL_TEXT_INCHES + 6 * PANEL_GAP_INCHES
    height = _header_inches(title_lines) + PANEL_HEADER_INCHES + rows * (PANEL_ROW_GAP_INCHES + PANEL_TILE_INCHES)
    return width, height + FOOTER_INCHES + PANEL_GAP_INCHES


def _header_inches(lines: int) -> float:
    return PANEL_GAP_INCHES + lines * LINE_INCHES + PANEL_GAP_INCHES


def render_panel(
    explanation: Explanation,
    sources: Any = None,
    *,
    path: str | Path | None = None,
    dpi: int = 100,
    title: str | None = None,
    footer: str | None = None,
) -> Figure:
    """Draw one explanation: one row of five axes per prototype of the explanation, then the sum row.

    The figure is :func:`panel_size` inches (times ``dpi`` pixels when saved). Every heatmap is
    blended on the one colour scale of :func:`heatmap_range` (drawn as a colour bar in the last
    row), so a weak match looks weak beside a strong one.

    Args:
        explanation: From :func:`protozoo.explain`.
        sources: Where to fetch the prototypes' source images (see
            :func:`protozoo.viz.gallery.find_sources`); without them the source column shows each
            prototype's self-similarity map, or says that the model was never pushed.
        path: Save the figure here as PNG as well.
        dpi: Resolution of the saved PNG.
        title: Lines naming the decision and what the rows explain, in place of the default (a
            family's panel passes its own: the lesion head's reads the diagnosis over lesions);
            the banner and the OOD note are added around them.
        footer: The last row's text, in place of the default sum (:func:`score_sum`).

    Returns:
        The figure.
    """
    lines = header_lines(explanation, title)
    width, height = panel_size(len(explanation.prototypes), len(lines))
    fig = Figure(figsize=(width, height), dpi=dpi)
    draw_header(fig, lines, explanation)
    lefts = [PANEL_GAP_INCHES + col * (PANEL_TILE_INCHES + PANEL_GAP_INCHES) for col in range(5)]
    widths = [PANEL_TILE_INCHES] * 4 + [PANEL_TEXT_INCHES]
    header_y = 1 - (_header_inches(len(lines)) + PANEL_HEADER_INCHES / 2) / height
    for left, w, header in zip(lefts, widths, PANEL_COLUMNS):
        fig.text(
            (left + w / 2) / width,
            header_y,
            header,
            ha="center",
            va="center",
            fontsize=FONT_SIZE + 1,
            fontweight="bold",
        )
    display = to_display(explanation.image, explanation.mean, explanation.std)  # (H, W, 3)
    images = find_sources(
        sources,
        [ev.source["image_id"] for ev in explanation.prototypes if ev.source is not None],
        list_families().get(explanation.family),
    )
    scale = heatmap_range(explanation.prototypes)
    top = _header_inches(len(lines)) + PANEL_HEADER_INCHES
    for evidence in explanation.prototypes:
        top += PANEL_ROW_GAP_INCHES
        bottom = (height - top - PANEL_TILE_INCHES) / height
        axes = [
            fig.add_axes((left / width, bottom, w / width, PANEL_TILE_INCHES / height))
            for left, w in zip(lefts, widths)
        ]
        _draw_row(axes, display, evidence, images, explanation, scale)
        top += PANEL_TILE_INCHES
    _draw_footer(fig, explanation, footer, scale, (lefts[1] / width, width, height))
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def draw_header(fig: Figure, lines: list[HeaderLine], explanation: Explanation, font_size: int = FONT_SIZE) -> None:
    """The header lines, centred, one :data:`LINE_INCHES` each from the top of the figure."""
    height = fig.get_figheight()
    for i, line in enumerate(lines):
        y = 1 - (PANEL_GAP_INCHES + (i + 0.5) * LINE_INCHES) / height
        fig.text(0.5, y, line.text, ha="center", va="center", **_style(line, explanation, font_size))


def header_inches(lines: int) -> float:
    """Height of a header of ``lines`` lines, with a gap above and below."""
    return _header_inches(lines)


def _style(line: HeaderLine, explanation: Explanation, font_size: int = FONT_SIZE) -> dict[str, Any]:
    if line.kind == "banner":
        return {
            "fontsize": font_size,
            "fontweight": "bold",
            "color": "white",
            "bbox": {"facecolor": BANNER_COLOR, "edgecolor": "none", "pad": 2},
        }
    if line.kind == "ood":
        flagged = explanation.ood is not None and explanation.ood.flagged
        return {
            "fontsize": font_size,
            "fontweight": "bold" if flagged else "normal",
            "color": OOD_COLOR if flagged else "#555555",
        }
    if line.kind == "title":
        return {"fontsize": font_size + 2, "fontweight": "bold"}
    return {"fontsize": font_size}


def header_lines(explanation: Explanation, title: str | None = None, *, wrap: int = WRAP) -> list[HeaderLine]:
    """The lines above the rows: banner, decision and what the rows explain (``title`` or the
    default), OOD note; each wrapped to ``wrap`` characters (the panel's width) at spaces only, so a
    class name such as yellow_belly+white-ring_eye stays whole."""
    lines = []
    if explanation.intended_use:
        lines += [HeaderLine(t, "banner") for t in banner_lines(explanation.intended_use, wrap)]
    body = (title or "\n".join(decision_lines(explanation))).split("\n")
    for i, text in enumerate(body):
        lines += [HeaderLine(t, "title" if i == 0 else "line") for t in wrap_words(text, wrap if i else wrap * 5 // 6)]
    if explanation.ood is not None:
        lines += [HeaderLine(t, "ood") for t in wrap_words(explanation.ood.text, wrap)]
    return lines


def truth_text(explanation: Explanation) -> str:
    """``true label: X`` (and whether the prediction is right), or that none was given."""
    if explanation.true_name is None:
        return "true label: not given"
    verdict = "correct" if explanation.true_class == explanation.predicted else "WRONG"
    return f"true label: {explanation.true_name} (prediction {verdict})"


def _probabilities(names: list[str], probabilities: Any) -> str:
    return ", ".join(f"{name} {float(p):.2f}" for name, p in zip(names, probabilities))


def decision_lines(explanation: Explanation) -> list[str]:
    """What was decided and which output the rows explain.

    A BRAIxProtoPNet++ explanation (``branch_probabilities``) names the ensemble's decision, each
    branch's probabilities and decision, and labels the rows as the prototype branch's evidence.
    """
    shown, others = len(explanation.prototypes), len(explanation.contributions) - len(explanation.prototypes)
    c = explanation.class_name
    branches = explanation.branch_probabilities
    if branches is None:
        first = f"Predicted: {explanation.predicted_name} (probability {explanation.probability:.2f}) · {truth_text(explanation)}"
        explained = c if explanation.class_idx == explanation.predicted else f"{c} (not the predicted class)"
        return [
            first,
            f"Rows: the {shown} prototypes with the most points for {explained}; {c} score (logit) "
            f"{explanation.logit:.2f} = their points + those of the other {others} (last row)",
        ]
    names = class_names(explanation)
    decided = {name: names[int(p.argmax())] for name, p in branches.items()}
    lines = [
        f"Ensemble decision: {decided['ensemble']} (probability {float(branches['ensemble'].max()):.2f}), the mean of the "
        f"two branches' probabilities · {truth_text(explanation)}",
        f"global branch (CNN): {_probabilities(names, branches['global'])} -> decides {decided['global']}",
        f"prototype branch: {_probabilities(names, branches['prototype'])} -> decides {decided['prototype']}",
    ]
    agree = (
        "which it also decides"
        if decided["prototype"] == c
        else f"though the prototype branch itself decides {decided['prototype']}"
    )
    lines.append(
        f"Rows: the prototype branch's evidence for {c} ({agree}); the prototype branch's {c} score (logit) "
        f"{explanation.logit:.2f} = the {shown} rows' points + those of the other {others} (last row)"
    )
    return lines


def class_names(explanation: Explanation) -> list[str]:
    """The class names in logit order (indices where the explanation was made without them)."""
    return explanation.class_names or [str(k) for k in range(len(explanation.probabilities))]


def score_sum(explanation: Explanation) -> tuple[float, float, float]:
    """(points of the shown rows, points of every other prototype, bias): they add up to ``explanation.logit``
    (the multi-view head's co-occurrence block aside)."""
    shown = sum(ev.contribution for ev in explanation.prototypes)
    others = float(explanation.contributions.sum()) - shown
    return shown, others, explanation.bias


def _default_footer(explanation: Explanation) -> str:
    shown, others, bias = score_sum(explanation)
    count = len(explanation.contributions) - len(explanation.prototypes)
    against = int(explanation.contributions.argmin())
    score = (
        f"the prototype branch's {explanation.class_name} score"
        if explanation.branch_probabilities is not None
        else f"{explanation.class_name} score"
    )
    bias_text = f" + bias {bias:+.2f}" if bias else ""
    return (
        f"all {count} other prototypes: points {others:+.2f}\n"
        f"  (most against {explanation.class_name}: prototype {against}, "
        f"{float(explanation.contributions[against]):+.2f})\n"
        f"sum: rows {shown:+.2f} + others {others:+.2f}{bias_text} = {shown + others + bias:.2f}\n"
        f"  = {score} (logit)"
    )


def heatmap_range(prototypes: list[PrototypeEvidence]) -> tuple[float, float]:
    """The one colour scale of a panel's heatmaps: 0 (or the lowest value) to the highest value of all rows."""
    if not prototypes:
        return 0.0, 1.0
    low = min(0.0, min(float(ev.heatmap.min()) for ev in prototypes))
    high = max(float(ev.heatmap.max()) for ev in prototypes)
    return low, max(high, low + 1e-6)


def _draw_footer(
    fig: Figure,
    explanation: Explanation,
    footer: str | None,
    scale: tuple[float, float],
    where: tuple[float, float, float],
) -> None:
    left, width, height = where
    bar = fig.add_axes((left, (PANEL_GAP_INCHES + 0.45) / height, PANEL_TILE_INCHES / width, 0.16 / height))
    colorbar = fig.colorbar(
        ScalarMappable(Normalize(*scale), matplotlib.colormaps[HEATMAP_CMAP]), cax=bar, orientation="horizontal"
    )
    colorbar.set_label("similarity: one colour scale for all rows", fontsize=FONT_SIZE - 2)
    colorbar.ax.tick_params(labelsize=FONT_SIZE - 3)
    text = footer if footer is not None else _default_footer(explanation)
    x = (PANEL_GAP_INCHES + 2 * (PANEL_TILE_INCHES + PANEL_GAP_INCHES)) / width
    # monospace characters are ~0.6 em wide: shrink a long line (a lesion's sum) to fit the figure
    room = (1 - x) * width * 72 / 0.6  # points of width / points per character at size 1
    longest = max((len(line) for line in text.splitlines()), default=1)
    fig.text(
        x,
        (PANEL_GAP_INCHES + FOOTER_INCHES / 2) / height,
        text,
        ha="left",
        va="center",
        fontsize=min(FONT_SIZE, room / longest),
        family="monospace",
    )


def _wrap(name: str, width: int = 26) -> str:
    """A class name on lines of at most ``width`` characters, broken after ``+``, ``_`` or spaces."""
    lines = [""]
    for token in re.findall(r"[^+_ ]+[+_ ]?", name) or [name]:
        if lines[-1] and len(lines[-1]) + len(token) > width:
            lines.append("")
        lines[-1] += token
    return "\n".join(lines)


def _draw_row(
    axes: list,
    display: Any,
    evidence: PrototypeEvidence,
    images: dict,
    explanation: Explanation,
    scale: tuple[float, float],
) -> None:
    plain, heat, boxed, source, text = axes
    plain.imshow(display, interpolation="lanczos")
    heat.imshow(blend_heatmap(display, evidence.heatmap.numpy(), value_range=scale), interpolation="lanczos")
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
        source.text(
            0.5,
            0.03,
            note,
            transform=source.transAxes,
            ha="center",
            va="bottom",
            fontsize=FONT_SIZE - 2,
            color="white",
            bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"},
        )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    text.axis("off")
    to = "prototype branch's " if explanation.branch_probabilities is not None else ""
    # a lesion head's prototype adds to its lesion's logit, not to the diagnosis
    target = (
        f"{evidence.class_name} logit" if explanation.prototype_kind == "lesion" else f"{explanation.class_name} score"
    )
    text.text(
        0.04,
        0.5,
        f"prototype {evidence.index} of {explanation.prototype_kind}\n"
        f"{_wrap(evidence.class_name)}\n\n"
        f"similarity {evidence.similarity:7.3f}\n"
        f"× weight   {evidence.weight:+7.3f}\n"
        f"= points   {evidence.contribution:+7.3f}\n"
        f"{_wrap('to the ' + to + target, 28)}",
        ha="left",
        va="center",
        fontsize=FONT_SIZE,
        family="monospace",
    )
