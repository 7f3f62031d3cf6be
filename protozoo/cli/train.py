"""``protozoo train --model NAME --data SPEC --epochs N --out DIR [--resume]``.

Runs single-process, or data-parallel under ``torchrun --nproc_per_node N protozoo train ...``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from protozoo.cli._args import nonnegative_int, positive_int
from protozoo.train.schedule import Recipe

RECIPE_FLAGS = {  # flag dest -> Recipe field
    "epochs": "epochs", "warm_epochs": "warm_epochs", "push_start": "push_start", "push_every": "push_every",
    "last_layer_epochs": "last_layer_epochs", "batch_size": "batch_size", "unique_source": "unique_source",
    "seed": "seed", "global_epochs": "global_epochs",
}  # fmt: skip


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="fine-tune a model on a dataset (warm, joint, push, last layer)")
    parser.add_argument("--model", required=True, help="registered name or a saved model folder")
    parser.add_argument("--data", required=True, help="dataset spec: synthetic-parts, folder:PATH, cub:PATH, ...")
    parser.add_argument("--out", required=True, type=Path, help="output folder (checkpoint, metrics, model/)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--recipe", type=Path, help="recipe .json/.yaml; flags below override its fields")
    parser.add_argument("--global-epochs", type=nonnegative_int,
                        help="BRAIxProtoPNet++: epochs of the global branch alone first")
    parser.add_argument("--epochs", type=positive_int, help="warm + joint epochs")
    parser.add_argument("--warm-epochs", type=nonnegative_int)
    parser.add_argument("--push-start", type=nonnegative_int)
    parser.add_argument("--push-every", type=positive_int)
    parser.add_argument("--last-layer-epochs", type=nonnegative_int)
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--unique-source", choices=["none", "per_class", "global"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--image-size", type=positive_int, help="input size (default: the model's)")
    parser.add_argument("--num-samples", type=positive_int, help="synthetic datasets: training samples")
    parser.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset option, repeatable (e.g. num_classes=3, crop_to_bbox=true)")
    parser.add_argument("--prototypes-per-class", type=positive_int)
    parser.add_argument("--pretrained-backbone", action="store_true", help="ImageNet backbone from an offline source")
    parser.add_argument("--num-workers", type=nonnegative_int, default=0)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the GPU if any)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def recipe_from_args(args: argparse.Namespace, family_default: Recipe | None = None) -> Recipe:
    """The recipe: --recipe or the model family's default (``Task.recipe``: BRAIxProtoPNet++'s
    global stage, the lesion head's separation...), then the flags. On --resume too: ``fit`` compares
    it with the run's saved ``recipe.json`` and refuses a different one, saying what differs."""
    recipe = Recipe.load(args.recipe) if args.recipe else family_default or Recipe()
    changes = {field: getattr(args, dest) for dest, field in RECIPE_FLAGS.items() if getattr(args, dest) is not None}
    return Recipe.from_dict(recipe.to_dict() | changes)


def parse_options(pairs: list[str]) -> dict[str, object]:
    """``["num_classes=3", "crop_to_bbox=true"]`` -> ``{"num_classes": 3, "crop_to_bbox": True}`` (JSON values)."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--data-option {pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a plain string
    return options


def run(args: argparse.Namespace) -> int:
    from protozoo.train.session import prepare_run

    seed = recipe_from_args(args).seed  # the model's init depends on it, and families share the default seed
    model_overrides = {}
    if args.prototypes_per_class is not None:
        model_overrides["prototypes_per_class"] = args.prototypes_per_class
    run_ = prepare_run(
        args.model, args.data, image_size=args.image_size, num_samples=args.num_samples,
        pretrained_backbone=args.pretrained_backbone, seed=seed,
        data_options=parse_options(args.data_option), **model_overrides,
    )
    from protozoo.train.loop import fit
    from protozoo.train.tasks import task_for

    recipe = recipe_from_args(args, task_for(run_.model).recipe())

    fit(run_.model, run_.train, recipe=recipe, val_data=run_.val, push_data=run_.push, out_dir=args.out,
        resume=args.resume, device=args.device, num_workers=args.num_workers, progress=not args.no_progress)
    return 0
