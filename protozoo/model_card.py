"""Model cards: ``README.md`` with the Hub's YAML metadata, through ``huggingface_hub.ModelCard``.

The metadata (``library_name: protozoo``, license, tags, datasets, ``base_model``, and a
``model-index`` of evaluation results) is what the Hub indexes; the body is for people. The measured
numbers live in ``metrics.json`` beside the weights (:data:`METRICS_NAME`), so a card can be
regenerated from ``config.json`` + ``metrics.json`` without re-evaluating:

.. code-block:: json

    {"dataset": {"spec": "synthetic-mammo", "split": "test", "options": {"lesion_size": 2.0}},
     "results": {"accuracy": 0.96, "auroc": 0.99, "pointing_game": 0.83, "lesion_auroc": {"drusen": 0.54}},
     "localization_comparison": [{"map": "Grad-CAM [global]", "pointing_game": 0.62, "activation_precision": 0.47,
                                  "iou": 0.22, "images": 162}],
     "training": {"minutes": 5.7, "cpu_cores": 2}}

``results`` keys are those of :data:`METRICS` (plus ``lesion_auroc``: lesion -> AUROC); every part
but ``results`` is optional.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huggingface_hub import ModelCard, ModelCardData

    from protozoo.models._base import ProtoModel

CARD_NAME = "README.md"
METRICS_NAME = "metrics.json"
TASK = "image-classification"

# results key -> (row label in the card, model-index metric type, model-index metric name)
METRICS: dict[str, tuple[str, str, str]] = {
    "accuracy": ("test accuracy", "accuracy", "Accuracy"),
    "balanced_accuracy": ("balanced accuracy", "balanced_accuracy", "Balanced accuracy"),
    "auroc": ("AUROC", "roc_auc", "AUROC (binary, or macro one-vs-rest)"),
    "consistency": ("consistency (Huang et al. 2023)", "consistency", "Part consistency (Huang et al. 2023)"),
    "stability": ("stability (Huang et al. 2023)", "stability", "Part stability (Huang et al. 2023)"),
    "stability_pooled": (
        "stability pooled over (prototype, image) pairs",
        "stability_pooled",
        "Part stability pooled over (prototype, image) pairs",
    ),
    "pointing_game": ("pointing game", "pointing_game", "Localization: pointing game (prototype maps vs lesion masks)"),
    "activation_precision": (
        "activation precision",
        "activation_precision",
        "Localization: activation precision (prototype maps vs lesion masks)",
    ),
    "iou": ("IoU with lesion masks", "iou", "Localization: IoU (prototype maps vs lesion masks)"),
    "dice": ("Dice with lesion masks", "dice", "Localization: Dice (prototype maps vs lesion masks)"),
}
LESION_AUROC = "lesion_auroc"
BASE_TAGS = ("protozoo", "prototype-network", "interpretability", "explainable-ai", TASK)


def read_metrics(folder: str | Path) -> dict[str, Any] | None:
    """A model folder's ``metrics.json``, or None when it has none.

    Raises:
        ValueError: Naming the file when it is not JSON or has no ``results`` object.
    """
    path = Path(folder) / METRICS_NAME
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}); delete it or rewrite it") from err
    check_metrics(metrics, repr(str(path)))
    return metrics


def check_metrics(metrics: Any, source: str = "metrics") -> None:
    """Raise a ValueError naming ``source`` when ``metrics`` is not of the ``metrics.json`` form."""
    if not isinstance(metrics, Mapping) or not isinstance(metrics.get("results"), Mapping):
        raise ValueError(f"{source} must be an object with a 'results' object (see protozoo.model_card)")
    known = set(METRICS) | {LESION_AUROC}
    unknown = sorted(set(metrics["results"]) - known)
    if unknown:
        raise ValueError(f"{source}: unknown results {unknown}; known: {sorted(known)}")


def card_data(
    model: ProtoModel,
    metrics: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    base_model: str | None = None,
    tags: Iterable[str] = (),
) -> ModelCardData:
    """The YAML metadata of a model's card: library, license, tags, datasets, base model, evaluation results."""
    from huggingface_hub import ModelCardData

    from protozoo.family import family_of

    cfg = model.pretrained_cfg
    name = name or cfg.name or model.config.arch
    dataset = dict((metrics or {}).get("dataset") or {})
    spec = dataset.get("spec") or (cfg.extra.get("train_data") or {}).get("spec")
    family = family_of(model).name
    all_tags = [*BASE_TAGS, family, *tags]
    if spec and str(spec).startswith("synthetic-"):
        all_tags.append("synthetic-data")
    return ModelCardData(
        library_name="protozoo",
        license=(cfg.license or "other").lower(),
        tags=list(dict.fromkeys(all_tags)),
        datasets=[str(spec).split(":")[0]] if spec else None,  # a spec's scheme, never a local path
        base_model=base_model,
        pipeline_tag=TASK,
        model_name=name,
        eval_results=eval_results(metrics) if metrics else None,
    )


def eval_results(metrics: Mapping[str, Any]) -> list:
    """``model-index`` entries (``huggingface_hub.EvalResult``) of every result in ``metrics``."""
    from huggingface_hub import EvalResult

    check_metrics(metrics)
    dataset = dict(metrics.get("dataset") or {})
    spec = str(dataset.get("spec") or "unknown").split(":")[0]
    common = dict(
        task_type=TASK,
        dataset_type=spec,
        dataset_name=dataset.get("name") or spec,
        dataset_split=dataset.get("split", "test"),
        dataset_args=dataset.get("options") or None,
    )
    results = []
    for key, value in metrics["results"].items():
        if key == LESION_AUROC:
            results += [
                EvalResult(
                    **common,
                    metric_type="roc_auc",
                    metric_value=float(v),
                    metric_config=lesion,
                    metric_name=f"Lesion AUROC: {lesion}",
                )
                for lesion, v in value.items()
            ]
        elif value is not None:
            _, metric_type, metric_name = METRICS[key]
            results.append(
                EvalResult(**common, metric_type=metric_type, metric_value=float(value), metric_name=metric_name)
            )
    return results


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) rows of the card's metrics table, in the order the results were recorded."""
    rows: list[tuple[str, Any]] = []
    for key, value in metrics["results"].items():
        if key == LESION_AUROC:
            rows += [(f"lesion AUROC: {lesion}", v) for lesion, v in value.items()]
        elif value is not None:
            rows.append((METRICS[key][0], value))
    return rows


def table(header: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_section(metrics: Mapping[str, Any]) -> str:
    """The card's 'prototypes beside Grad-CAM' section from ``metrics["localization_comparison"]`` ('' without)."""
    rows = metrics.get("localization_comparison") or []
    if not rows:
        return ""
    return (
        f"## Prototypes beside Grad-CAM of the same network\n\nOn the same {rows[0]['images']} lesion-bearing "
        "test images, for the true class (`protozoo.evaluate.localization` and `posthoc_localization`):\n\n"
        + table(
            ("map", "pointing game", "activation precision", "IoU"),
            [(r["map"], r["pointing_game"], r["activation_precision"], r["iou"]) for r in rows],
        )
    )


def render_card(
    model: ProtoModel,
    metrics: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    summary: str | None = None,
    details: Iterable[tuple[str, str]] | None = None,
    sections: Iterable[str] = (),
    base_model: str | None = None,
    tags: Iterable[str] = (),
    load_name: str | None = None,
) -> ModelCard:
    """A model card: the metadata of :func:`card_data` and a body for people.

    Args:
        model: The model (its config and pretrained configuration describe it).
        metrics: Measured results, as ``metrics.json`` holds them (none: a card without results).
        name: The model's name (default: its ``arch.tag``).
        summary: The opening paragraph (default: the pretrained configuration's description).
        details: (key, value) rows of the 'about' table (default: architecture, input, classes,
            training data, license, paper).
        sections: Markdown sections after the metrics (each starting with ``## ``).
        base_model: The Hub id of the backbone's pretrained weights.
        tags: Extra tags.
        load_name: What to pass to ``protozoo.load`` in the 'Use it' snippet (default: ``name``).
    """
    from huggingface_hub import ModelCard

    cfg = model.pretrained_cfg
    name = name or cfg.name or model.config.arch
    data = card_data(model, metrics, name=name, base_model=base_model, tags=tags)
    if details is None:
        train = cfg.extra.get("train_data") or {}
        details = [
            (
                "architecture",
                f"`{model.config.arch}`: timm `{model.config.backbone}`, {model.num_prototypes} prototypes "
                f"of depth {model.config.prototype_dim}",
            ),
            (
                "input",
                f"{tuple(cfg.input_size)}, mean {tuple(round(m, 4) for m in cfg.mean)}, "
                f"std {tuple(round(s, 4) for s in cfg.std)}",
            ),
            ("classes", ", ".join(cfg.label_names or ()) or "-"),
            ("training data", f"`{train['spec']}` with options `{train.get('options', {})}`" if train else "-"),
            ("license", cfg.license or "-"),
            ("paper", cfg.paper or "-"),
        ]
    parts = [
        f"# {name}",
        summary or cfg.description or f"A protozoo `{model.config.arch}` model.",
        table(("", ""), details),
    ]
    if metrics:
        where = dict(metrics.get("dataset") or {})
        said = f" on the `{where['spec']}` {where.get('split', 'test')} split" if where.get("spec") else ""
        parts.append(
            f"## Test metrics\n\nMeasured{said} (`metrics.json`):\n\n"
            + table(("metric", "value"), metric_rows(metrics))
        )
        comparison = comparison_section(metrics)
        if comparison:
            parts.append(comparison)
    parts += [s.strip() for s in sections if s and s.strip()]
    parts.append(
        "## Use it\n\n```python\nimport protozoo\nfrom protozoo.data import build_transforms, read_image, resolve_data_config\n\n"
        f"model = protozoo.load({json.dumps(load_name or name)})  # eval mode\n"
        'image = build_transforms(resolve_data_config(model), train=False)({"image": read_image("case.png")})["image"]\n'
        "explanation = protozoo.explain(model, image, top_k=5)  # the prototypes behind the prediction\n```"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(parts) + "\n")


def write_card(card: ModelCard, folder: str | Path) -> Path:
    """Write ``card`` as ``folder/README.md`` (atomically)."""
    from protozoo.serialization import write_text

    path = Path(folder) / CARD_NAME
    write_text(str(card), path)
    return path


def write_metrics(metrics: Mapping[str, Any], folder: str | Path) -> Path:
    """Write ``folder/metrics.json`` after checking its form."""
    from protozoo.serialization import write_json

    check_metrics(metrics)
    path = Path(folder) / METRICS_NAME
    write_json(dict(metrics), path)
    return path
