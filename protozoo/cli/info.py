"""``protozoo info NAME``: architecture, prototypes, parameters, inputs and weight sources."""

from __future__ import annotations

import argparse

from protozoo.backbone_weights import available_sources
from protozoo.builder import create_model
from protozoo.family import family_of
from protozoo.registry import list_aliases, resolve
from protozoo.zoo import model_card


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="describe a model")
    parser.add_argument("name", help="arch, arch.tag or alias")


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args.name)
    model = create_model(cfg.name if cfg.has_weights else args.name)  # the architecture of the weights described
    family = family_of(model)
    config = model.config
    inputs = cfg if cfg.has_weights else model.pretrained_cfg  # trained: its own inputs; else adapted defaults
    counts = model.count_parameters()
    rows = [
        ("name", cfg.name + _how_named(args.name, cfg.name)),
        ("family", f"{family.title or family.name} ({type(model).__name__})"),
        (
            "backbone",
            f"{config.backbone} (timm), stage {config.feature_stage}, {model.backbone.out_channels} "
            f"channels, stride {model.backbone.reduction}",
        ),
        (
            "head",
            f"{config.add_on} add-on -> {family.describe_prototypes(model)} of depth {config.prototype_dim}, "
            f"{config.similarity} similarity; {model.num_classes} output classes",
        ),
        ("options", _options(config)),
        ("parameters", ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in counts.items())),
        ("input", f"{inputs.input_size} mean {inputs.mean} std {inputs.std} ({inputs.interpolation})"),
        ("trained weights", _weights(cfg)),
        (
            "backbone weights",
            ", ".join(available_sources(config.backbone)) or "none offline (pretrained_backbone=True will fail)",
        ),
        ("paper", cfg.paper or "-"),
        ("license", cfg.license or "-"),
    ]
    if cfg.label_names:
        rows.append(("labels", ", ".join(cfg.label_names)))
    if family.prototype_kind != "class":
        rows.append((f"{family.prototype_kind} types", ", ".join(family.class_names(model))))
    if cfg.description:
        rows.append(("description", cfg.description))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    card = model_card(cfg.name)
    if card:
        print("\n" + card)
    return 0


#: The optional switches of every ProtoPNet-family config (``protozoo train --model-option KEY=VALUE``).
OPTIONS = ("add_on_norm", "input_blur", "foreground_only")


def _options(config) -> str:
    """``add_on_norm=True, input_blur=1.0, foreground_only=False`` and the flag that sets them."""
    shown = ", ".join(f"{key}={getattr(config, key)}" for key in OPTIONS if hasattr(config, key))
    return f"{shown} (train --model-option KEY=VALUE)" if shown else "-"


def _how_named(asked: str, name: str) -> str:
    if asked == name:
        return ""
    if asked in list_aliases():
        return f"  (alias {asked})"
    return f"  (the default weights of {asked})"


def _weights(cfg) -> str:
    if not cfg.has_weights:
        return "none yet (head untrained)"
    where = [
        f"weights/{cfg.weights_dir}" if cfg.weights_dir else "",
        f"hf-hub:{cfg.hf_hub_id}" if cfg.hf_hub_id else "",
        cfg.file or "",
    ]
    return ", ".join(w for w in where if w)
