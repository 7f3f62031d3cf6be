"""Fine-tune one backbone's ProtoPNet (``prepare_run`` + ``fit``, the family's recipe) and its plain
classifier (same backbone, same initial weights, same loader and epochs), resumably in a folder."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from protozoo.benchmark.classifier import PlainClassifier, load_classifier, save_classifier, train_classifier
from protozoo.benchmark.options import BenchmarkOptions
from protozoo.benchmark.transfer import freeze_protopnet_stages, frozen_stage_parameters, protopnet_name
from protozoo.data import build_transforms, load_dataset, resolve_data_config

CLASSIFIER_FILE = "classifier.safetensors"


@dataclass
class TrainedPair:
    """Both models of one backbone x initialisation, with the data they were trained and are scored on."""

    protopnet: nn.Module
    classifier: PlainClassifier
    test: Dataset  # untagged test split, eval transform
    push: Dataset  # the training images prototypes were pushed from, eval transform
    eval_transform: Any
    init_source: str
    frozen_tensors: int


class InitUnavailable(Exception):
    """An ImageNet initialisation without an offline source; the message says which sources were tried."""


def data_options(options: BenchmarkOptions) -> dict[str, Any]:
    """The dataset options of the training split: the benchmark's, and the tag's probability."""
    shortcut = {"shortcut": float(options.shortcut)} if options.data.startswith("synthetic-") else {}
    return dict(options.data_options) | shortcut


def train_pair(
    options: BenchmarkOptions,
    backbone: str,
    init: str,
    folder: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainedPair:
    """Train (or, from ``folder``, resume or reload) the ProtoPNet and the plain classifier (each only
    when a method explains it: ``prototypes`` the ProtoPNet, the post-hoc methods the classifier).

    Raises:
        InitUnavailable: ``init="imagenet"`` and no offline source has the backbone's weights.
    """
    from protozoo.backbone_weights import BackboneWeightsNotFound
    from protozoo.train.loop import fit
    from protozoo.train.session import prepare_run
    from protozoo.train.tasks import task_for

    name = protopnet_name(backbone)
    weights = options.backbone_weights.get(backbone)
    if weights is not None and not Path(weights).is_file():  # a typo is an error, not an "unavailable" row
        raise FileNotFoundError(
            f"backbone_weights[{backbone!r}]: {weights!r} does not exist (a timm state dict, "
            ".safetensors or .pth, of that backbone)"
        )
    synthetic = options.data.startswith("synthetic-")
    try:
        run = prepare_run(
            name,
            options.data,
            image_size=options.image_size,
            num_samples=options.train_samples if synthetic else None,
            pretrained_backbone=init == "imagenet",
            seed=options.seed,
            data_options=data_options(options),
            **({"backbone_weights": weights} if weights else {}),
        )
    except BackboneWeightsNotFound as err:
        raise InitUnavailable(str(err)) from err
    model = run.model
    eval_tf = _fix_transforms(run, model, options)
    init_source = getattr(model, "backbone_source", None) or f"random init (seed {options.seed})"
    classifier = PlainClassifier(copy.deepcopy(model.backbone), len(model.pretrained_cfg.label_names))
    frozen = freeze_protopnet_stages(model, options.freeze_stages)
    recipe = _recipe(task_for(model).recipe(), options)
    if "prototypes" in options.methods:
        fit(
            model,
            run.train,
            recipe=recipe,
            val_data=None,
            push_data=run.push,
            out_dir=folder / "protopnet",
            resume=True,
            progress=progress,
            log=log,
        )
    path = folder / CLASSIFIER_FILE
    if path.is_file():
        load_classifier(classifier, path)
    elif any(method != "prototypes" for method in options.methods):
        history = train_classifier(
            classifier,
            run.train,
            epochs=options.epochs,
            batch_size=options.batch_size,
            seed=options.seed,
            frozen=frozen_stage_parameters(classifier.backbone, options.freeze_stages),
            progress=progress,
        )
        log(
            f"classifier: {len(history)} epochs, last loss {history[-1]['loss']:.4f}, acc {history[-1]['accuracy']:.3f}"
        )
        from protozoo.train.distributed import DistContext

        if DistContext.from_env().is_main:
            save_classifier(classifier, path)
    test = evaluation_split(options, eval_tf)
    return TrainedPair(model.eval(), classifier.eval(), test, run.push, eval_tf, init_source, frozen)


def _fix_transforms(run, model, options: BenchmarkOptions):
    """No centre crop and no flip: synthetic images are generated at the input size, and the
    shortcut tag sits at the top edge (a 0.875 crop cuts it away) in a slot that codes the class
    (a flip moves it into another class's slot). Both models and every ``shortcut`` see this."""
    side = options.image_size
    config = resolve_data_config(model, input_size=(model.config.in_chans, side, side), crop_pct=1.0)
    model.pretrained_cfg = model.pretrained_cfg.replace(crop_pct=1.0)
    run.train.transform = build_transforms(config, train=True, crop_scale=None, hflip=0.0)
    eval_tf = build_transforms(config, train=False)
    run.push.transform = eval_tf
    return eval_tf


def _recipe(family_recipe, options: BenchmarkOptions):
    """The family's recipe at the benchmark's budget: one warm epoch (when there are two or more),
    one push after the last, ``last_layer_epochs`` after it."""
    from protozoo.train.schedule import Recipe

    changes = {
        "epochs": options.epochs,
        "warm_epochs": 1 if options.epochs > 1 else 0,
        "push_start": options.epochs,
        "push_every": options.epochs,
        "last_layer_epochs": options.last_layer_epochs,
        "batch_size": options.batch_size,
        "seed": options.seed,
    }
    return Recipe.from_dict(family_recipe.to_dict() | changes)


def evaluation_split(options: BenchmarkOptions, transform, *, tagged_raw: bool = False) -> Dataset:
    """The untagged test split (a folder without one: its val split), eval-transformed; ``tagged_raw``:
    the same images untransformed (what :mod:`protozoo.benchmark.shortcut` draws the tag on)."""
    synthetic = options.data.startswith("synthetic-")
    extra = (
        {"image_size": options.image_size, "seed": options.seed, "num_samples": options.test_samples, "shortcut": 0.0}
        if synthetic
        else {"image_size": options.image_size}
    )
    extra = dict(options.data_options) | extra
    chosen = None if tagged_raw else transform
    for split in ("test", "val"):
        try:
            return load_dataset(options.data, split, transform=chosen, **extra)
        except (ValueError, FileNotFoundError):
            if split == "val":
                raise
    raise AssertionError("unreachable")
