"""The benchmark's figures: explanation F1 and pointing game by architecture and method (grouped
bars), accuracy against explanation quality (scatter), and the shortcut figures when measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protozoo.serialization import atomic_path

BAR_METRICS = (("explanation_f1", "explanation F1"), ("pointing_game", "pointing game"))
SHORTCUT_METRICS = (
    ("tag_lift", "explanation mass on the tag / its area"),
    ("accuracy_drop", "accuracy drop without the tag"),
)


def _scored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("status") == "ok"]


def _groups(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    groups = list(dict.fromkeys(f"{r['backbone']}\n{r['init']}" for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    return groups, methods


def grouped_bars(rows: list[dict[str, Any]], path: Path, metrics=BAR_METRICS, title: str = "") -> Path | None:
    """One panel per metric: a group of bars per backbone x init, a bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _scored(rows) if any(r.get(m) is not None for m, _ in metrics)]
    if not rows:
        return None
    groups, methods = _groups(rows)
    width = 0.8 / len(methods)
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(5.0, 1.9 * len(groups)) * len(metrics), 3.8), squeeze=False)
    for ax, (metric, label) in zip(axes[0], metrics):
        top = max((r.get(metric) or 0.0) for r in rows)
        digits = 3 if top < 0.1 else 2
        for j, method in enumerate(methods):
            values = [
                next(
                    (r.get(metric) for r in rows if f"{r['backbone']}\n{r['init']}" == g and r["method"] == method),
                    None,
                )
                for g in groups
            ]
            xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(groups))]
            bars = ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=method)
            ax.bar_label(bars, labels=["-" if v is None else f"{v:.{digits}f}" for v in values], fontsize=6, padding=1)
        ax.set_ylim(min(0.0, min((r.get(metric) or 0.0) for r in rows) * 1.2), max(top * 1.2, 0.01))
        ax.set_xticks(range(len(groups)), groups, fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def accuracy_scatter(rows: list[dict[str, Any]], path: Path, quality: str = "explanation_f1") -> Path | None:
    """Each row a point: its model's test accuracy against its maps' ``quality``, one marker per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _scored(rows) if r.get(quality) is not None]
    if not rows:
        return None
    _, methods = _groups(rows)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    named: set[tuple] = set()
    for method, marker in zip(methods, "osD^v<>"):
        chosen = [r for r in rows if r["method"] == method]
        ax.scatter([r["accuracy"] for r in chosen], [r[quality] for r in chosen], marker=marker, label=method, s=40)
        for r in chosen:
            if (r["backbone"], r["init"], r["model"], r["accuracy"]) in named:
                continue  # the post-hoc methods of one classifier share its accuracy: one label
            named.add((r["backbone"], r["init"], r["model"], r["accuracy"]))
            ax.annotate(
                f"{r['backbone']} ({r['init']})",
                (r["accuracy"], r[quality]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("test accuracy of the explained model")
    ax.set_ylabel(quality.replace("_", " ").replace("f1", "F1"))
    ax.margins(x=0.35, y=0.15)  # room for the labels
    ax.set_ylim(bottom=0.0)
    ax.set_title("accuracy vs explanation quality")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def render_figures(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Every figure the rows have data for, as PNGs in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    made = [
        grouped_bars(rows, folder / "localization_by_architecture.png"),
        accuracy_scatter(rows, folder / "accuracy_vs_explanation.png"),
    ]
    if any(r.get("tag_lift") is not None for r in rows):
        made.append(
            grouped_bars(
                rows,
                folder / "shortcut.png",
                SHORTCUT_METRICS,
                title=f"shortcut tag on {rows[0]['shortcut']:.0%} of the training images",
            )
        )
    return [p for p in made if p is not None]
