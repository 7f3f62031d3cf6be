"""``report.html``: the results table and the figures, embedded (one self-contained file)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from protozoo.benchmark.figures import render_figures
from protozoo.serialization import write_text

COLUMNS = (
    "backbone",
    "init",
    "method",
    "model",
    "accuracy",
    "auroc",
    "pointing_game",
    "iou",
    "dice",
    "activation_precision",
    "explanation_f1",
    "energy",
    "infidelity",
    "max_sensitivity",
    "tag_energy",
    "tag_lift",
    "tag_pointing_game",
    "prototypes_on_tag",
    "accuracy_drop",
)


def reason(row: dict[str, Any]) -> str:
    """Why a row was not scored, in one line (the weight sources tried, without the how-to)."""
    lines = [line.strip(" -") for line in str(row.get("note") or row.get("status")).splitlines()]
    parts = [line for line in lines if line and not line.startswith("Provide one")]
    return " ".join(parts[:1] + ["; ".join(parts[1:])]).strip()


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict[str, Any]], columns=COLUMNS) -> str:
    """The rows as a Markdown table of the columns any row has (the README's table)."""
    shown = [c for c in columns if any(c in r and r.get(c) is not None for r in rows)]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = [
            format_value(row.get(c))
            if row.get("status") == "ok" or c in ("backbone", "init", "method", "model")
            else "n/a"
            for c in shown
        ]
        lines.append("| " + " | ".join(cells) + " |")
    reasons = dict.fromkeys(f"{r['backbone']} {r['init']}: {reason(r)}" for r in rows if r.get("status") != "ok")
    return "\n".join(lines + ([""] + [f"n/a: {reason}" for reason in reasons] if reasons else []))


def write_report(rows: list[dict[str, Any]], out: Path) -> Path:
    """Render the figures into ``out/figures`` and write ``out/report.html`` with them embedded."""
    figures = render_figures(rows, out / "figures")
    shown = [c for c in COLUMNS if any(r.get(c) is not None for r in rows)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = []
    for row in rows:
        if row.get("status") != "ok":
            note = html.escape(reason(row))
            body.append(
                f"<tr><td>{html.escape(row['backbone'])}</td><td>{html.escape(row['init'])}</td>"
                f"<td>{html.escape(row['method'])}</td><td colspan='{len(shown) - 3}'>not run: {note}</td></tr>"
            )
            continue
        body.append("<tr>" + "".join(f"<td>{html.escape(format_value(row.get(c)))}</td>" for c in shown) + "</tr>")
    images = "".join(
        f"<figure><img alt='{p.stem}' src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
        f"<figcaption>{html.escape(p.stem.replace('_', ' '))}</figcaption></figure>"
        for p in figures
    )
    options = rows[0]["options"] if rows else {}
    text = f"""<!doctype html><html><head><meta charset="utf-8"><title>protozoo explanation benchmark</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} img{{max-width:100%}}</style></head><body>
<h1>Explanation benchmark</h1>
<p>Data {html.escape(str(options.get("data")))}, {options.get("image_size")} px, {options.get("epochs")} epochs,
seed {options.get("seed")}, shortcut {options.get("shortcut")}, frozen stages {options.get("freeze_stages")}.
Post-hoc methods explain the plain classifier, <i>prototypes</i> the ProtoPNet of the same backbone; scores on the
untagged test split against its masks (threshold {options.get("threshold")}); infidelity and max-sensitivity
(captum, lower is better) on the first {options.get("faithfulness_samples")} test images; tag figures on the
same test images with the tag of their true class drawn.</p>
<table><tr>{head}</tr>{"".join(body)}</table>
{images}
</body></html>
"""
    path = out / "report.html"
    write_text(text, path)
    return path
