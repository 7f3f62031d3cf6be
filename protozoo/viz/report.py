"""One self-contained HTML report: model summary, metrics, prototype gallery, sample explanations.

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

__all__ = ["png_data_uri", "render_report"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 0.3em 0.8em; text-align: left; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ccc; }
figure { margin: 1.5em 0; }
figcaption { font-size: 0.95em; color: #444; }
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
    explanations: Sequence[Explanation | ImageLike],
    sources: Any = None,
    title: str = "protozoo model report",
) -> Path:
    """Write the HTML report.

    Args:
        path: The ``.html`` file to write.
        model: The model (its architecture, prototypes, classes and push state are summarised).
        metrics: Name -> value (numbers shown with 4 decimals).
        gallery_png: The prototype gallery (from :func:`protozoo.viz.gallery.render_gallery`) as a
            PNG file, PNG bytes or figure; None says the model has no gallery (not pushed).
        explanations: Sample explanations: :class:`~protozoo.explanation.Explanation` objects (drawn
            with :func:`~protozoo.viz.panel.render_panel`, captioned with their top prototypes) or
            already rendered panels (file, bytes or figure).
        sources: Source images for the panels drawn here (see
            :func:`protozoo.viz.gallery.find_sources`).
        title: The page title.

    Returns:
        ``path``.
    """
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<h2>Model</h2>",
        _table(_model_rows(model)),
        "<h2>Metrics</h2>",
        _table([(k, _format(v)) for k, v in metrics.items()]) if metrics else "<p>No metrics given.</p>",
        "<h2>Prototypes</h2>",
    ]
    if gallery_png is None:
        parts.append("<p>No gallery: the model has not been pushed, so its prototypes are not image patches.</p>")
    else:
        parts.append(
            "<p>Each prototype is the training patch it was pushed from: its similarity to the rest of its source "
            "image is blended over it and its top 5% is boxed.</p>"
            f'<img alt="prototype gallery" src="{png_data_uri(gallery_png)}">'
        )
    parts.append("<h2>Sample explanations</h2>")
    for i, item in enumerate(explanations):
        if isinstance(item, Explanation):
            panel = list_families()[item.family].resolved("panel")  # the family's own panel
            uri, caption = png_data_uri(panel(item, sources)), _caption(item)
        else:
            uri, caption = png_data_uri(item), Path(item).name if isinstance(item, (str, Path)) else f"sample {i + 1}"
        parts.append(f'<figure><img alt="explanation {i + 1}" src="{uri}"><figcaption>{esc(caption)}</figcaption></figure>')
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


def _caption(explanation: Explanation) -> str:
    top = "; ".join(f"prototype {ev.index} ({ev.class_name}) {ev.contribution:+.2f}" for ev in explanation.prototypes)
    return (
        f"Predicted {explanation.predicted_name} (probability {explanation.probability:.2f}). "
        f"Points for {explanation.class_name}: {top}."
    )


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"
