"""``protozoo benchmark --backbones resnet18,densenet121 --data synthetic-fundus --out DIR [--preset quick]``.

Every backbone's plain classifier (Grad-CAM, Grad-CAM++, Score-CAM) and ProtoPNet (prototypes),
fine-tuned alike, scored against the test masks; see docs/benchmark.md. Runs single-process or
data-parallel under ``torchrun --nproc_per_node N protozoo benchmark ...``; a rerun into the same
``--out`` continues where the last one stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from protozoo.cli._args import nonnegative_int, positive_int


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return names


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], not {value}")
    return value


def _weights(pairs: list[str]) -> dict[str, str]:
    weights = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--backbone-weights {pair!r} is not BACKBONE=FILE")
        weights[name] = path
    return weights


FLAGS = {  # flag dest -> BenchmarkOptions field
    "backbones": "backbones", "data": "data", "methods": "methods", "init": "inits", "freeze_stages": "freeze_stages",
    "epochs": "epochs", "last_layer_epochs": "last_layer_epochs", "image_size": "image_size", "shortcut": "shortcut",
    "num_samples": "train_samples", "test_samples": "test_samples", "faithfulness_samples": "faithfulness_samples",
    "perturbations": "perturbations", "batch_size": "batch_size", "seed": "seed",
    "shortcut_figures": "shortcut_figures",
}  # fmt: skip


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(
        name, help="score every backbone's explanations (Grad-CAM..., prototypes) against masks"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (results.json/.csv, report.html)")
    parser.add_argument("--preset", choices=["quick"], help="quick: 3 backbones, 64 px, about 5 minutes on 2 cores")
    parser.add_argument("--backbones", type=_names, help="comma-separated, e.g. resnet18,densenet121")
    parser.add_argument(
        "--data", help="synthetic-fundus | synthetic-mammo | synthetic-parts | folder:PATH (with masks)"
    )
    parser.add_argument("--methods", type=_names, help="of gradcam,gradcam++,scorecam,prototypes (default: all)")
    parser.add_argument("--init", type=_names, help="imagenet and/or random, e.g. imagenet,random")
    parser.add_argument("--freeze-stages", type=nonnegative_int, help="keep the first K feature stages at their init")
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument(
        "--last-layer-epochs", type=nonnegative_int, help="ProtoPNet's last-layer epochs after its push"
    )
    parser.add_argument("--image-size", type=positive_int)
    parser.add_argument("--shortcut", type=_probability, help="probability of the class-coding tag on training images")
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option for every split, repeatable (e.g. lesion_size=3)",
    )
    parser.add_argument(
        "--shortcut-figures",
        action="store_true",
        default=None,
        help="score the tag figures at --shortcut 0 too (the baseline)",
    )
    parser.add_argument("--num-samples", type=positive_int, help="synthetic training images")
    parser.add_argument("--test-samples", type=positive_int, help="synthetic test images")
    parser.add_argument("--faithfulness-samples", type=nonnegative_int, help="test images for infidelity/sensitivity")
    parser.add_argument("--perturbations", type=positive_int, help="perturbations per image of infidelity/sensitivity")
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--seed", type=nonnegative_int)
    parser.add_argument(
        "--backbone-weights",
        action="append",
        default=[],
        metavar="BACKBONE=FILE",
        help="ImageNet weights (a timm state dict) of a backbone, repeatable",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def options_from_args(args: argparse.Namespace):
    from protozoo.benchmark import BenchmarkOptions

    changes = {field: getattr(args, dest) for dest, field in FLAGS.items() if getattr(args, dest) is not None}
    if args.backbone_weights:
        changes["backbone_weights"] = _weights(args.backbone_weights)
    if args.data_option:
        from protozoo.cli._args import parse_key_values

        changes["data_options"] = parse_key_values(args.data_option)
    return BenchmarkOptions.preset(args.preset, **changes) if args.preset else BenchmarkOptions(**changes)


def run(args: argparse.Namespace) -> int:
    from protozoo.benchmark import run as run_benchmark
    from protozoo.benchmark.report import markdown_table

    rows = run_benchmark(args.out, options_from_args(args), progress=not args.no_progress)
    if rows:
        print(markdown_table(rows))
    return 0
