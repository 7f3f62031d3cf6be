"""Turn a model name and a dataset spec into what ``fit`` needs: model, train/val/push datasets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from protozoo.data import build_transforms, load_dataset, parse_spec, resolve_data_config
from protozoo.family import family_of_arch
from protozoo.hub import CONFIG_NAME
from protozoo.registry import resolve


@dataclass
class Run:
    """A model sized for a dataset, with augmented train, eval-transformed val and push datasets."""

    model: Any
    train: Dataset
    val: Dataset | None
    push: Dataset


def prepare_run(
    model_name: str,
    data_spec: str,
    *,
    image_size: int | None = None,
    num_samples: int | None = None,
    pretrained_backbone: bool = False,
    seed: int = 0,
    data_options: dict[str, Any] | None = None,
    **model_overrides: Any,
) -> Run:
    """Build the model for the dataset's classes and channels, and the datasets with matching transforms.

    Args:
        model_name: Registered name, alias or saved model folder (fine-tuned from its weights).
        data_spec: ``protozoo.data.load_dataset`` spec.
        image_size: Input side in pixels (default: the model's pretrained input size).
        num_samples: Training samples of a synthetic dataset.
        pretrained_backbone: Start a registered architecture from ImageNet backbone weights.
        seed: Seed of the model's initialisation and of synthetic datasets.
        data_options: Extra keyword options of the dataset class, for every split
            (``{"num_classes": 3}`` for synthetic-parts, ``{"crop_to_bbox": True}`` for CUB...).
        **model_overrides: Architecture arguments (``prototypes_per_class``...).
    """
    import torch

    import protozoo

    for name, value in (("image_size", image_size), ("num_samples", num_samples)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1 (or None for the default), not {value!r}")
    torch.manual_seed(seed)  # the model's random init is part of the recipe: same seed, same run
    scheme, _ = parse_spec(data_spec)
    synthetic = scheme.startswith("synthetic-")
    options: dict[str, Any] = ({"seed": seed} if synthetic else {}) | (data_options or {})
    if synthetic and image_size:
        options["image_size"] = image_size
    probe = load_dataset(
        data_spec, "train", **options, **({"num_samples": num_samples} if synthetic and num_samples else {})
    )
    classes = list(probe.classes)
    first = probe[0]  # read once: its channels and keys decide the model and are checked against the family
    if Path(model_name).is_dir():
        family = family_of_arch(_saved_architecture(Path(model_name) / CONFIG_NAME))
        model = protozoo.load(model_name, **family.resolved("dataset_arguments")(probe), **model_overrides).train()
    else:
        family = family_of_arch(resolve(model_name).architecture)
        in_chans = _channels(family, first)
        model = protozoo.create_model(
            model_name,
            in_chans=in_chans,
            pretrained_backbone=pretrained_backbone,
            **family.resolved("dataset_arguments")(probe),
            **model_overrides,
        )
    _check_items(family, first, data_spec)
    side = image_size or model.pretrained_cfg.input_size[-1]
    # Mammograms and fundus photographs keep their whole field of view (the letterbox), in
    # training, push, evaluation and explanation alike (recorded below); other data the model's own fit.
    fit = {"crop_mode": "border", "crop_pct": 1.0} if getattr(probe, "crop_mode", "center") == "border" else {}
    data_config = resolve_data_config(model, input_size=(model.config.in_chans, side, side), **fit)
    # ProtoPNet's augmentation: flips and small affine changes, no random crops, which could cut
    # away the very parts the prototypes should learn.
    train_tf = build_transforms(data_config, train=True, crop_scale=None)
    eval_tf = build_transforms(data_config, train=False)
    train_options = options | ({"num_samples": num_samples} if synthetic and num_samples else {})
    train = load_dataset(data_spec, "train", transform=train_tf, **train_options)
    push = load_dataset(data_spec, "train", transform=eval_tf, **train_options)
    val = _eval_split(data_spec, eval_tf, options)
    model.pretrained_cfg = model.pretrained_cfg.replace(
        input_size=data_config["input_size"],
        mean=data_config["mean"],
        std=data_config["std"],
        crop_mode=data_config["crop_mode"],
        crop_pct=data_config["crop_pct"],
        label_names=tuple(classes),
        description=f"fine-tuned on {data_spec}",
        # What the training images were, so that push sources can be found again (protozoo explain --sources).
        extra=model.pretrained_cfg.extra | {"train_data": {"spec": data_spec, "options": train_options}},
    )
    return Run(model=model, train=train, val=val, push=push)


def _saved_architecture(config_path: Path) -> str:
    """The architecture a saved model's ``config.json`` names (the file named when it cannot say)."""
    from protozoo.serialization import WeightFileError

    if not config_path.is_file():
        raise FileNotFoundError(
            f"{str(config_path)!r} not found: a protozoo model folder holds {CONFIG_NAME} "
            "(written by model.save_pretrained)"
        )
    try:
        arch = json.loads(config_path.read_text())["architecture"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise WeightFileError(f"{str(config_path)!r} is not a protozoo config ({err!r})") from err
    if not isinstance(arch, str):
        raise WeightFileError(f"{str(config_path)!r}: architecture must be a registered name, not {arch!r}")
    return arch


def _channels(family, item: dict[str, Any]) -> int:
    """Input channels of a dataset item, read through the family's views (a breast: its views' images)."""
    view = next(iter(family.image_views(item).values()))
    return int(view["image"].shape[0])


def _check_items(family, item: dict[str, Any], spec: str) -> None:
    """Raise a ValueError naming what is missing when the dataset's items lack what the family needs."""
    missing = [key for key in family.requires if key not in item]
    if missing:
        raise ValueError(
            f"{family.title or family.name} models train on items with {list(family.requires)}; "
            f"{spec!r} items lack {missing} (they have {sorted(item)})"
        )


def _eval_split(data_spec: str, transform, options: dict[str, Any]) -> Dataset | None:
    """The dataset's val split, else its test split, else None."""
    for split in ("val", "test"):
        try:
            return load_dataset(data_spec, split, transform=transform, **options)
        except (ValueError, FileNotFoundError):
            continue
    return None


def training_options(model, spec: str) -> dict:
    """The dataset options a model was trained with, when ``spec`` is its training data's spec.

    A synthetic image is a function of its id *and* the generator's options (size, lesion size...):
    read with other options, the same id is another image, and the prototype's source patch would
    be wrong. ``prepare_run`` records them in ``pretrained_cfg.extra["train_data"]``.
    """
    recorded = model.pretrained_cfg.extra.get("train_data") or {}
    return dict(recorded.get("options", {})) if recorded.get("spec") == spec else {}
