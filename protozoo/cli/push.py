"""``protozoo push --model DIR --data SPEC [--out DIR] [--data-option KEY=VALUE]``: project a trained model's
prototypes onto a dataset and save the pushed model.

Every prototype becomes its nearest latent patch of the data (:func:`protozoo.push_prototypes`), with
provenance (``prototypes.json``). The push settings default to the run's recipe (``recipe.json``
beside the model or in the run folder above it: unique sources, foreground, lesions), and the data
to the options the model was trained with on the same spec; flags override both. The pushed data is
recorded in the model's config, so ``protozoo explain --sources SPEC`` finds the source images again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from protozoo.cli._args import add_data_option, parse_key_values, positive_int

UNIQUE_SOURCES = ("none", "per_class", "global")


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="push a trained model's prototypes onto a dataset and save it")
    parser.add_argument("--model", required=True, help="saved model folder (or registered name, hf-hub:org/repo)")
    parser.add_argument("--data", required=True, help="dataset spec: synthetic-parts, cub:PATH, folder:PATH, ...")
    parser.add_argument("--split", default="train", help="dataset split to push onto (default: train)")
    parser.add_argument("--out", type=Path, help="folder for the pushed model (default: --model itself, in place)")
    add_data_option(parser, "; on top of the options the model was trained with on the same spec")
    parser.add_argument("--num-samples", type=positive_int, help="synthetic datasets: samples (default: as trained)")
    parser.add_argument("--image-size", type=positive_int, help="input side in pixels (default: the model's)")
    parser.add_argument(
        "--unique-source",
        choices=UNIQUE_SOURCES,
        help="one image per prototype of a class / of the model (default: the run's recipe, else none)",
    )
    parser.add_argument(
        "--foreground",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="patches only from foreground cells (default: the run's recipe)",
    )
    parser.add_argument(
        "--lesions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="patches of lesion-bearing images only from their lesions (default: the run's recipe)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def recorded_push_settings(model_dir: Path | None) -> dict[str, Any]:
    """The push settings of the run's ``recipe.json`` (beside the model, or in the run folder above it)."""
    from protozoo.train import Recipe

    for folder in (model_dir, model_dir.parent) if model_dir is not None else ():
        if (folder / "recipe.json").is_file():
            recipe = Recipe.load(folder / "recipe.json")
            return {
                "unique_source": recipe.unique_source,
                "foreground": recipe.push_foreground,
                "lesions": recipe.push_lesions,
            }
    return {}


def push_dataset(
    model, spec: str, split: str, *, image_size: int | None, num_samples: int | None, data_options: dict[str, Any]
):
    """The dataset to push onto: the model's eval transform, its recorded training options (the
    training set's size too: push onto the data it was trained on), then ``data_options``."""
    from protozoo.cli.evaluate import eval_transform, model_data_options
    from protozoo.data import load_dataset
    from protozoo.family import family_of

    options = model_data_options(
        model, spec, image_size=image_size, num_samples=num_samples, data_options=data_options, keep_training_size=True
    )
    dataset = load_dataset(spec, split, transform=eval_transform(model, image_size), **options)
    family_of(model).check_dataset(model, dataset)  # another class count or lesion list: named, not pushed
    return dataset, dict(options)


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    import protozoo
    from protozoo.data.collate import collate_items

    model_dir = Path(args.model) if Path(args.model).is_dir() else None
    out = args.out or model_dir
    if out is None:
        raise ValueError(f"--model {args.model!r} is not a model folder: give --out for the pushed model")
    model = protozoo.load(args.model)
    dataset, options = push_dataset(
        model,
        args.data,
        args.split,
        image_size=args.image_size,
        num_samples=args.num_samples,
        data_options=parse_key_values(args.data_option),
    )
    settings = {"unique_source": "none", "foreground": False, "lesions": False} | recorded_push_settings(model_dir)
    given = {"unique_source": args.unique_source, "foreground": args.foreground, "lesions": args.lesions}
    settings |= {k: v for k, v in given.items() if v is not None}
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, collate_fn=collate_items)
    result = protozoo.push_prototypes(
        model, loader, class_specific=True, device=args.device, progress=not args.no_progress, **settings
    )
    # Where the prototypes now come from: ``protozoo explain --sources`` reads these options back.
    model.pretrained_cfg = model.pretrained_cfg.replace(
        extra=model.pretrained_cfg.extra | {"train_data": {"spec": args.data, "options": options}}
    )
    model.cpu().save_pretrained(out)
    distances = result.distances.float()
    reused = sum(bool(row.get("reused_source")) for row in model.provenance or [])
    print(
        f"pushed {model.num_prototypes} prototypes onto {len(dataset)} images of {args.data} ({args.split}); "
        f"{', '.join(f'{k}={v}' for k, v in settings.items())}"
    )
    print(f"push distance: mean {distances.mean():.4g}, max {distances.max():.4g}; {reused} reused sources")
    print(f"saved {out} (prototypes.json holds each prototype's source image and box)")
    return 0
