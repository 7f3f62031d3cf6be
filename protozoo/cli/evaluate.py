"""``protozoo evaluate --model NAME|DIR --data SPEC --metrics accuracy,consistency,... --out report.json``.

Prints a table of the scores and writes the full report (per-prototype and per-image detail) as JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from protozoo.cli._args import add_data_option, parse_key_values, positive_int

METRICS = ("accuracy", "consistency", "stability", "localization", "posthoc", "prototypes")
LOCALIZATION_COLUMNS = ("pointing_game", "activation_precision", "iou", "dice")


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="score a model: accuracy, part consistency/stability, localization")
    parser.add_argument("--model", required=True, help="registered name, alias or saved model folder")
    parser.add_argument("--data", required=True, help="dataset spec: synthetic-parts, cub:PATH, synthetic-fundus, ...")
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument(
        "--metrics", default="accuracy", help=f"comma-separated, of {', '.join(METRICS)} (default: accuracy)"
    )
    parser.add_argument("--num-samples", type=positive_int, help="synthetic datasets: number of samples")
    parser.add_argument("--image-size", type=int, help="input side in pixels (default: the model's)")
    add_data_option(
        parser, "; on top of the options the model was trained with on the same spec (its config records them)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stability noise")
    parser.add_argument(
        "--posthoc-methods",
        default="gradcam,gradcam++,scorecam",
        help="posthoc: comma-separated post-hoc maps (default: gradcam,gradcam++,scorecam)",
    )
    parser.add_argument("--out", type=Path, help="write the JSON report here")


def parse_metrics(text: str) -> list[str]:
    """``"accuracy,consistency"`` -> the metric names, checked against :data:`METRICS`."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    return names


def build_data(
    model,
    spec: str,
    split: str,
    *,
    image_size: int | None,
    num_samples: int | None,
    data_options: dict[str, Any] | None = None,
):
    """The dataset of ``spec`` with the model's eval transform (synthetic: generated at the input size).

    The dataset options the model was trained with on ``spec`` (``pretrained_cfg.extra["train_data"]``,
    :func:`protozoo.train.session.training_options`; not the training set's size) apply first, so a
    model trained with ``--data-option`` is scored on its own kind of data; ``data_options`` go on top.
    """
    from protozoo.data import load_dataset

    options = model_data_options(model, spec, image_size=image_size, num_samples=num_samples, data_options=data_options)
    dataset = load_dataset(spec, split, transform=eval_transform(model, image_size), **options)
    if getattr(dataset, "num_classes", model.num_classes) != model.num_classes:
        raise ValueError(f"{spec!r} has {dataset.num_classes} classes but the model has {model.num_classes}")
    return dataset


def eval_transform(model, image_size: int | None):
    """The model's eval transform at ``image_size`` (default: its input size)."""
    from protozoo.data import build_transforms, resolve_data_config

    side = image_size or model.pretrained_cfg.input_size[-1]
    return build_transforms(resolve_data_config(model, input_size=(model.config.in_chans, side, side)), train=False)


def model_data_options(
    model,
    spec: str,
    *,
    image_size: int | None,
    num_samples: int | None,
    data_options: dict[str, Any] | None,
    keep_training_size: bool = False,
) -> dict[str, Any]:
    """The options to load ``spec`` with for ``model``: its recorded training options (without the
    training set's size and image size unless ``keep_training_size``), then ``data_options``; a
    synthetic dataset is generated at the input size and, if given, ``num_samples`` items."""
    from protozoo.data import parse_spec
    from protozoo.train.session import training_options

    recorded = training_options(model, spec)
    if not keep_training_size:
        recorded = {k: v for k, v in recorded.items() if k not in ("num_samples", "image_size")}
    options: dict[str, Any] = recorded | dict(data_options or {})
    if parse_spec(spec)[0].startswith("synthetic-"):
        options["image_size"] = image_size or model.pretrained_cfg.input_size[-1]
        if num_samples:
            options["num_samples"] = num_samples
    return options


def evaluate(
    model,
    dataset,
    metrics: list[str],
    *,
    batch_size: int,
    device: str | None,
    seed: int,
    posthoc_methods: tuple[str, ...] = ("gradcam", "gradcam++", "scorecam"),
) -> dict[str, Any]:
    """Runs the chosen evaluators; consistency and stability share one pass.

    ``posthoc``: ``{"<method> [<branch>]": localization}`` for every post-hoc method and every
    saliency branch of the model (BRAIxProtoPNet++: ``global`` and ``ensemble``), on the same
    images and the same (true) class as ``localization``.
    """
    from protozoo import evaluate as ev

    common = {"batch_size": batch_size, "device": device}
    report: dict[str, Any] = {}
    if "accuracy" in metrics:
        report["classification"] = ev.classification(model, dataset, **common).to_dict()
    if "consistency" in metrics and "stability" in metrics:
        both = ev.consistency_and_stability(model, dataset, seed=seed, **common)
        report["consistency"], report["stability"] = (result.to_dict() for result in both)
    elif "consistency" in metrics:
        report["consistency"] = ev.consistency(model, dataset, **common).to_dict()
    elif "stability" in metrics:
        report["stability"] = ev.stability(model, dataset, seed=seed, **common).to_dict()
    if "localization" in metrics:
        report["localization"] = ev.localization(model, dataset, **common).to_dict()
    if "posthoc" in metrics:
        from protozoo.evaluate.posthoc import saliency_branches

        report["posthoc"] = {
            f"{method} [{branch}]": ev.posthoc_localization(
                model, dataset, method=method, branch=branch, **common
            ).to_dict()
            for branch in saliency_branches(model)
            for method in posthoc_methods
        }
    if "prototypes" in metrics:
        report["prototypes"] = ev.prototype_stats(model, dataset, **common).to_dict()
    return report


def localization_table(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows (map, pointing game, activation precision, IoU, Dice): the prototype maps, then each
    post-hoc map, scored on the same images; empty when the report has neither."""
    maps = [("prototypes (top of true class)", report["localization"])] if "localization" in report else []
    maps += list(report.get("posthoc", {}).items())
    if not maps:
        return []
    rows = [("map", *LOCALIZATION_COLUMNS)]
    for name, scores in maps:
        rows.append((name, *("-" if scores[key] is None else f"{scores[key]:.4g}" for key in LOCALIZATION_COLUMNS)))
    return rows


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of the headline numbers of a report."""
    wanted = {
        "classification": ("accuracy", "balanced_accuracy", "auroc"),
        "consistency": ("score",),
        "stability": ("score",),
        "prototypes": ("mean_purity", "distinct_nearest_images", "distinct_source_images"),
    }
    rows = []
    for section, keys in wanted.items():
        for key in keys if section in report else ():
            value = report[section][key]
            name = section if key == "score" else key
            rows.append((name, "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)))
    if "prototypes" in report:
        rows.append(("duplicate_pairs", str(len(report["prototypes"]["duplicate_pairs"]))))
    return rows


def run(args: argparse.Namespace) -> int:
    import protozoo

    metrics = parse_metrics(args.metrics)
    model = protozoo.load(args.model).eval()
    if args.device:
        model.to(args.device)
    dataset = build_data(
        model,
        args.data,
        args.split,
        image_size=args.image_size,
        num_samples=args.num_samples,
        data_options=parse_key_values(args.data_option),
    )
    methods = tuple(name.strip() for name in args.posthoc_methods.split(",") if name.strip())
    report = evaluate(
        model, dataset, metrics, batch_size=args.batch_size, device=args.device, seed=args.seed, posthoc_methods=methods
    )
    rows = summary_rows(report)
    if rows:
        rows = [("metric", "value")] + rows
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
    table = localization_table(report)
    if table:
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        print("localization on the same images (lesion-bearing), prototypes vs post-hoc:")
        for row in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    if args.out:
        from protozoo.serialization import write_json

        meta = {"model": args.model, "data": args.data, "split": args.split, "num_samples": len(dataset)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json({**meta, "metrics": report}, args.out)
        print(f"report written to {args.out}")
    return 0
