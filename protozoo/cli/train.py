"""``protozoo train --model NAME --data SPEC --epochs N --out DIR [--resume]``.

Runs single-process, or data-parallel under ``torchrun --nproc_per_node N protozoo train ...``.
``--epochs`` alone scales the rest of the family's default schedule with it (:func:`scale_schedule`:
``--epochs 6`` warms 1 epoch and trains 1 last-layer epoch per push, as the 30-epoch default
warms 5 and trains 20); the run ends with a metrics summary of the trained model on the
held-out split, also written to ``final_metrics.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from protozoo.cli._args import nonnegative_int, parse_key_values, positive_int
from protozoo.train.schedule import Recipe

RECIPE_FLAGS = {  # flag dest -> Recipe field
    "epochs": "epochs", "warm_epochs": "warm_epochs", "push_start": "push_start", "push_every": "push_every",
    "last_layer_epochs": "last_layer_epochs", "batch_size": "batch_size", "unique_source": "unique_source",
    "seed": "seed", "global_epochs": "global_epochs",
}  # fmt: skip
#: Recipe fields counted in epochs, which ``--epochs`` scales (unless given themselves).
SCHEDULE_FIELDS = ("global_epochs", "warm_epochs", "push_start", "push_every", "last_layer_epochs", "lr_step")


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="fine-tune a model on a dataset (warm, joint, push, last layer)")
    parser.add_argument("--model", required=True, help="registered name or a saved model folder")
    parser.add_argument("--data", required=True, help="dataset spec: synthetic-parts, folder:PATH, cub:PATH, ...")
    parser.add_argument("--out", required=True, type=Path, help="output folder (checkpoint, metrics, model/)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--recipe", type=Path, help="recipe .json/.yaml; flags below override its fields")
    parser.add_argument(
        "--global-epochs", type=nonnegative_int, help="BRAIxProtoPNet++: epochs of the global branch alone first"
    )
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
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. num_classes=3, crop_to_bbox=true)",
    )
    parser.add_argument("--prototypes-per-class", type=positive_int)
    parser.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture argument, repeatable (e.g. foreground_only=true, input_blur=1.0, add_on_norm=true; "
        "`protozoo info MODEL` shows a model's)",
    )
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
    if args.epochs is not None and not args.recipe:  # a recipe file's own values are the user's: never scaled
        changes = scale_schedule(recipe, args.epochs, keep=set(changes)) | changes
    return Recipe.from_dict(recipe.to_dict() | changes)


def scale_schedule(recipe: Recipe, epochs: int, *, keep: set[str] = frozenset()) -> dict[str, int]:
    """The schedule fields of ``recipe`` (:data:`SCHEDULE_FIELDS`) scaled from its ``epochs`` to ``epochs``.

    Each becomes the same fraction of the run, rounded: the 30-epoch default (warm 5, first push
    after 10, then every 10, 20 last-layer epochs per push, a decay every 5 joint epochs) at
    ``epochs=2`` warms 1, pushes after epochs 1 and 2 with 1 last-layer epoch each. A phase the
    recipe has keeps at least one epoch (the warm phase: while a joint epoch is left), and the
    first push comes at the latest after the last epoch. Fields in ``keep`` (given as flags)
    are left out.
    """
    ratio = epochs / recipe.epochs
    scaled = {}
    for name in SCHEDULE_FIELDS:
        value = getattr(recipe, name)
        if name in keep or value == 0:
            continue
        new = max(1, round(value * ratio))
        if name == "warm_epochs":
            new = min(new, epochs - 1)  # a short run still has a joint epoch (warm trains no backbone)
        elif name == "push_start":
            new = min(new, epochs)
        scaled[name] = new
    return scaled


def model_options(args: argparse.Namespace) -> dict[str, object]:
    """The architecture arguments of ``--model-option KEY=VALUE`` and ``--prototypes-per-class``
    (``create_model`` / ``load`` refuse an unknown key, listing the known ones)."""
    options = parse_key_values(args.model_option, flag="--model-option")
    count = args.prototypes_per_class
    if count is not None:
        if options.get("prototypes_per_class", count) != count:
            raise ValueError(
                f"--prototypes-per-class {count} and --model-option prototypes_per_class="
                f"{options['prototypes_per_class']} disagree; give one of them"
            )
        options["prototypes_per_class"] = count
    return options


def run(args: argparse.Namespace) -> int:
    from protozoo.train.session import prepare_run

    seed = recipe_from_args(args).seed  # the model's init depends on it, and families share the default seed
    model_overrides = model_options(args)
    run_ = prepare_run(
        args.model,
        args.data,
        image_size=args.image_size,
        num_samples=args.num_samples,
        pretrained_backbone=args.pretrained_backbone,
        seed=seed,
        data_options=parse_key_values(args.data_option),
        **model_overrides,
    )
    from protozoo.train.loop import fit
    from protozoo.train.tasks import task_for

    family_default = task_for(run_.model).recipe()
    recipe = recipe_from_args(args, family_default)
    scaled = {
        k: (getattr(family_default, k), getattr(recipe, k))
        for k in SCHEDULE_FIELDS
        if getattr(family_default, k) != getattr(recipe, k) and getattr(args, k, None) is None
    }
    if scaled and args.epochs is not None and not args.recipe:
        print(
            f"--epochs {recipe.epochs} scales the default {family_default.epochs}-epoch schedule: "
            + ", ".join(f"{k} {old} -> {new}" for k, (old, new) in scaled.items())
        )
    result = fit(
        run_.model,
        run_.train,
        recipe=recipe,
        val_data=run_.val,
        push_data=run_.push,
        out_dir=args.out,
        resume=args.resume,
        device=args.device,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    summarize(result, run_.val, args.out)
    return 0


def summarize(result, held_out, out: Path) -> dict[str, object]:
    """Print and write (``out/final_metrics.json``) the final model's scores on the held-out split.

    The held-out split is the one ``prepare_run`` validated on (the dataset's val split, else its
    test split); without one, the last training epoch's accuracy and loss are all there is.
    """
    import torch.distributed as dist

    from protozoo.evaluate import classification
    from protozoo.serialization import write_json

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return {}
    last = next((row for row in reversed(result.history) if row.get("kind") == "train"), {})
    summary: dict[str, object] = {
        "last_train_phase": last.get("phase"),
        "last_train_accuracy": last.get("accuracy"),
        "last_train_loss": last.get("loss"),
    }
    if held_out is not None:
        scores = classification(result.model.eval(), held_out).to_dict()
        summary |= {"split": held_out.split, "n": len(held_out)}
        summary |= {k: scores[k] for k in ("accuracy", "balanced_accuracy", "auroc") if k in scores}
    width = max(len(k) for k in summary)
    print(
        "final metrics"
        + (
            f" (the trained model on the {summary['split']} split, n={summary['n']})"
            if held_out is not None
            else " (no held-out split: the last training epoch)"
        )
    )
    for key, value in summary.items():
        print(f"  {key:<{width}}  {'-' if value is None else f'{value:.4g}' if isinstance(value, float) else value}")
    write_json(summary, out / "final_metrics.json")
    return summary
