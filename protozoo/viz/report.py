"""One self-contained HTML report: model summary, metrics, test set, prototype gallery, sample explanations.

A zoo model's report opens with its intended use (:func:`protozoo.intended_use.intended_use`); the
metrics are set beside the test set's size, per-class counts and chance levels; every sample
explanation gives its prediction beside its true label and its out-of-distribution note.

Every image is embedded as a base64 ``data:image/png`` URI and the styling is inline, so the file
opens offline, can be mailed or archived as is, and never loads anything from elsewhere.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from protozoo.explanation import Explanation
from protozoo.family import family_of, list_families, output_class_names
from protozoo.intended_use import intended_use

__all__ = ["png_data_uri", "prototypes_on_foreground", "render_report", "test_set_rows"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 0.3em 0.8em; text-align: left; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ccc; }
figure { margin: 1.5em 0; }
figcaption { font-size: 0.95em; color: #444; }
.banner { background: #b03a2e; color: white; font-weight: bold; padding: 0.6em 1em; }
.wrong, .ood { color: #b03a2e; font-weight: bold; }
"""

ImageLike = str | Path | bytes | Figure


def png_data_uri(image: ImageLike) -> str:
    """A ``data:image/png;base64,...`` URI of a PNG file, PNG bytes or a matplotlib figure."""
    if isinstance(image, Figure):
        buffer = io.BytesIO()
        image.savefig(buffer, format="png")
        data = buffer.getvalue()
    elif isinstance(image, bytes):
        data = image
    else:
        data = Path(image).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_report(
    path: str | Path,
    *,
    model: Any,
    metrics: Mapping[str, Any],
    gallery_png: ImageLike | None,
    explanations: Sequence[Explanation | ImageLike | tuple[Explanation, ImageLike]],
    sources: Any = None,
    title: str = "protozoo model report",
    test_labels: Sequence[int] | None = None,
) -> Path:
    """Write the HTML report.

    Args:
        path: The ``.html`` file to write.
        model: The model (its architecture, prototypes, classes and push state are summarised).
        metrics: Name -> value (numbers shown with 4 decimals).
        gallery_png: The prototype gallery (from :func:`protozoo.viz.gallery.render_gallery`) as a
            PNG file, PNG bytes or figure; None says the model has no gallery (not pushed).
        explanations: Sample explanations: :class:`~protozoo.explanation.Explanation` objects (drawn
            with their family's panel, captioned with their true label, top prototypes and OOD note),
            already rendered panels (file, bytes or figure), or ``(explanation, its rendered panel)``.
        sources: Source images for the panels drawn here (see
            :func:`protozoo.viz.gallery.find_sources`).
        title: The page title.
        test_labels: The true classes of the test set the metrics were measured on: its size,
            per-class counts and chance levels are listed beside the metrics.

    Returns:
        ``path``.
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    use = intended_use(model)
    if use:
        parts.append(f'<p class="banner">INTENDED USE: {esc(use)}</p>')
    parts += [
        "<h2>Model</h2>",
        _table(_model_rows(model) + _foreground_rows(model, sources)),
        "<h2>Metrics</h2>",
        _table([(k, _format(v)) for k, v in metrics.items()]) if metrics else "<p>No metrics given.</p>",
    ]
    if test_labels is not None:
        parts += ["<h2>Test set</h2>", _table(test_set_rows(test_labels, output_class_names(model)))]
    parts.append("<h2>Prototypes</h2>")
    if gallery_png is None:
        parts.append("<p>No gallery: the model has not been pushed, so its prototypes are not image patches.</p>")
    else:
        parts.append(
            "<p>Each prototype is the training patch it was pushed from: its similarity to the rest of its source "
            "image is blended over it and its top 5% is boxed.</p>"
            f'<img alt="prototype gallery" src="{png_data_uri(gallery_png)}">'
        )
    parts.append("<h2>Sample explanations</h2>")
    drawn = [
        item[0] if isinstance(item, tuple) else item
        for item in explanations
        if isinstance(item, Explanation) or isinstance(item, tuple)
    ]
    if drawn:
        parts.append(_summary_table(drawn))
    for i, item in enumerate(explanations):
        if isinstance(item, tuple):
            uri, caption = png_data_uri(item[1]), _caption(item[0], i)
        elif isinstance(item, Explanation):
            panel = list_families()[item.family].resolved("panel")  # the family's own panel
            uri, caption = png_data_uri(panel(item, sources)), _caption(item, i)
        else:
            uri, caption = png_data_uri(item), Path(item).name if isinstance(item, (str, Path)) else f"sample {i + 1}"
        parts.append(
            f'<figure><img alt="explanation {i + 1}" src="{uri}"><figcaption>{esc(caption)}</figcaption></figure>'
        )
    if not explanations:
        parts.append("<p>No sample explanations.</p>")
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _model_rows(model: Any) -> list[tuple[str, str]]:
    cfg = model.pretrained_cfg
    family = family_of(model)
    pushed = "yes" if model.provenance is not None else "no (prototypes are not image patches yet)"
    rows = [
        ("architecture", cfg.name or model.config.arch),
        ("family", family.title or family.name),
        ("prototypes", family.describe_prototypes(model)),
        ("classes", ", ".join(output_class_names(model))),
    ]
    if family.prototype_kind != "class":
        rows.append((f"{family.prototype_kind} types", ", ".join(family.class_names(model))))
    return rows + [
        ("input", f"{tuple(cfg.input_size)}, mean {tuple(cfg.mean)}, std {tuple(cfg.std)}"),
        ("pushed", pushed),
    ]


def prototypes_on_foreground(model: Any, sources: Any) -> tuple[int, int] | None:
    """How many prototypes sit on the foreground (tissue, disc, object) of their source image, of how many
    found in ``sources``: a cell at least half foreground (the item's ``foreground``, else the automatic
    rule of :mod:`protozoo.foreground`). None without provenance or sources."""
    from protozoo.foreground import foreground_cells, foreground_of

    if model.provenance is None or sources is None or isinstance(sources, Mapping):
        return None
    family = family_of(model)
    rows = {str(row["image_id"]): [] for row in model.provenance}
    for row in model.provenance:
        rows[str(row["image_id"])].append(row)
    on = seen = 0
    for index in range(len(sources)):
        for view in family.image_views(sources[index]).values():
            for row in rows.pop(str(view.get("id")), []):
                batch = {"image": view["image"][None]}
                if view.get("foreground") is not None:
                    batch["foreground"] = view["foreground"][None]
                cells = foreground_cells(foreground_of(batch), tuple(row["feature_size"]))[0]  # (h, w)
                on += bool(cells[tuple(row["feature_hw"])])
                seen += 1
        if not rows:
            break
    return (on, seen) if seen else None


def _foreground_rows(model: Any, sources: Any) -> list[tuple[str, str]]:
    counted = prototypes_on_foreground(model, sources)
    if counted is None:
        return []
    on, seen = counted
    warning = "" if on == seen else f" -- {seen - on} on background: they explain nothing about the anatomy"
    return [("prototypes on the foreground of their source", f"{on} of {seen}{warning}")]


def test_set_rows(labels: Sequence[int], names: Sequence[str]) -> list[tuple[str, str]]:
    """The test set in rows: its size n, per-class counts and the chance levels of the metrics.

    Chance levels: the accuracy of always answering the most frequent class, the balanced accuracy
    of any constant (or random) answer (1 / classes), and an AUROC of 0.5.
    """
    labels = [int(label) for label in labels]
    n = len(labels)
    counts = [labels.count(k) for k in range(len(names))]
    majority = max(range(len(names)), key=lambda k: counts[k])
    return [
        ("test images (n)", str(n)),
        ("per class", ", ".join(f"{name} {count}" for name, count in zip(names, counts))),
        ("chance accuracy (always the most frequent class)", f"{counts[majority] / max(n, 1):.3f} ({names[majority]})"),
        ("chance balanced accuracy", f"{1 / len(names):.3f}"),
        ("chance AUROC", "0.500"),
    ]


def _item_name(explanation: Explanation, i: int) -> str:
    return str(explanation.extra.get("image_id", f"sample {i + 1}"))


def _truth(explanation: Explanation) -> str:
    if explanation.true_name is None:
        return "not given"
    return explanation.true_name + ("" if explanation.true_class == explanation.predicted else " (prediction WRONG)")


def _summary_table(explanations: Sequence[Explanation]) -> str:
    """One row per explained item: its id, true label, prediction, probability and OOD verdict."""
    esc = html.escape
    head = (
        "<tr><th>item</th><th>true label</th><th>predicted</th><th>probability</th><th>out of distribution?</th></tr>"
    )
    rows = []
    for i, e in enumerate(explanations):
        wrong = e.true_class is not None and e.true_class != e.predicted
        flagged = e.ood is not None and e.ood.flagged
        verdict = "unknown (no statistics)" if e.ood is None or e.ood.flagged is None else ("YES" if flagged else "no")
        rows.append(
            f"<tr><td>{esc(_item_name(e, i))}</td><td>{esc(e.true_name or 'not given')}</td>"
            f"<td{' class=wrong' if wrong else ''}>{esc(e.predicted_name)}</td><td>{e.probability:.2f}</td>"
            f"<td{' class=ood' if flagged else ''}>{esc(verdict)}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _caption(explanation: Explanation, i: int = 0) -> str:
    top = "; ".join(f"prototype {ev.index} ({ev.class_name}) {ev.contribution:+.2f}" for ev in explanation.prototypes)
    ood = f" {explanation.ood.text}." if explanation.ood is not None else ""
    return (
        f"{_item_name(explanation, i)}: predicted {explanation.predicted_name} (probability {explanation.probability:.2f}); "
        f"true label: {_truth(explanation)}. Points for {explanation.class_name}: {top}.{ood}"
    )


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"
