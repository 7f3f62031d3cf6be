"""``protozoo evaluate --model NAME|DIR --data SPEC --metrics accuracy,consistency,... --out report.json``.

Prints a table of the scores and writes the full report (per-prototype and per-image detail) as JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from protozoo.cli._args import positive_int

METRICS = ("accuracy", "consistency", "stability", "localization", "prototypes")


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
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stability noise")
    parser.add_argument("--out", type=Path, help="write the JSON report here")


def parse_metrics(text: str) -> list[str]:
    """``"accuracy,consistency"`` -> the metric names, checked against :data:`METRICS`."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    return names


def build_data(model, spec: str, split: str, *, image_size: int | None, num_samples: int | None):
    """The dataset of ``spec`` with the model's eval transform (synthetic: generated at the input size)."""
    from protozoo.data import build_transforms, load_dataset, parse_spec, resolve_data_config

    side = image_size or model.pretrained_cfg.input_size[-1]
    config = resolve_data_config(model, input_size=(model.config.in_chans, side, side))
    options: dict[str, Any] = {"transform": build_transforms(config, train=False)}
    if parse_spec(spec)[0].startswith("synthetic-"):
        options["image_size"] = side
        if num_samples:
            options["num_samples"] = num_samples
    dataset = load_dataset(spec, split, **options)
    if getattr(dataset, "num_classes", model.num_classes) != model.num_classes:
        raise ValueError(f"{spec!r} has {dataset.num_classes} classes but the model has {model.num_classes}")
    return dataset


def evaluate(model, dataset, metrics: list[str], *, batch_size: int, device: str | None, seed: int) -> dict[str, Any]:
    """Runs the chosen evaluators; consistency and stability share one pass."""
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
    if "prototypes" in metrics:
        report["prototypes"] = ev.prototype_stats(model, dataset, **common).to_dict()
    return report


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of the headline numbers of a report."""
    wanted = {
        "classification": ("accuracy", "balanced_accuracy", "auroc"),
        "consistency": ("score",),
        "stability": ("score",),
        "localization": ("pointing_game", "iou", "dice", "activation_precision"),
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
    dataset = build_data(model, args.data, args.split, image_size=args.image_size, num_samples=args.num_samples)
    report = evaluate(model, dataset, metrics, batch_size=args.batch_size, device=args.device, seed=args.seed)
    rows = [("metric", "value")] + summary_rows(report)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.out:
        from protozoo.serialization import write_json

        meta = {"model": args.model, "data": args.data, "split": args.split, "num_samples": len(dataset)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json({**meta, "metrics": report}, args.out)
        print(f"report written to {args.out}")
    return 0
