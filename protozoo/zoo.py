"""The zoo's trained models: the declarations of :mod:`protozoo.zoo_tags` registered as ``arch.tag``.

A tag's weights live in a folder of what ``model.save_pretrained`` writes (``config.json``,
``model.safetensors``, ``prototypes.json``) plus ``README.md`` (the model card), ``metrics.json``
(its measured test metrics), ``recipe.json`` and ``golden.safetensors`` (a stored input and the
outputs it must give). :func:`protozoo.hub.locate_weights` finds that folder;
``examples/build_zoo_model.py NAME`` writes one.
"""

from __future__ import annotations

from typing import Any

from protozoo import registry
from protozoo.model_card import CARD_NAME, METRICS_NAME, read_metrics  # noqa: F401  (the zoo's file names)
from protozoo.pretrained import PretrainedCfg, adapt_channels

GOLDEN_NAME = "golden.safetensors"
RECIPE_NAME = "recipe.json"


def tag_cfg(name: str, row: dict[str, Any]) -> PretrainedCfg:
    """The pretrained configuration a :data:`protozoo.zoo_tags.TAGS` row declares for ``name``."""
    from protozoo.zoo_tags import DEFAULTS, HF_ORG

    arch, tag = registry.split_model_name(name)
    if not tag:
        raise ValueError(f"zoo tag {name!r} must be 'arch.tag'")
    row = DEFAULTS | row
    base = registry.default_cfg(arch)
    base = adapt_channels(base, row["model_args"].get("in_chans", base.in_chans))  # mean, std of the channels
    base = base.replace(input_size=tuple(row.get("input_size", base.input_size)))
    fields = {
        k: row[k]
        for k in ("label_names", "license", "paper", "description", "interpolation", "crop_pct", "crop_mode")
        if k in row
    }
    if fields.get("label_names") is not None:
        fields["label_names"] = tuple(fields["label_names"])
    return base.replace(
        architecture=arch,
        tag=tag,
        weights_dir=name,
        file=None,
        hf_hub_id=row.get("hf_hub_id", f"{HF_ORG}/{name}"),
        **fields,
    )


def register_tags(tags: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Register every declared tag (default: :data:`protozoo.zoo_tags.TAGS`) with its architecture arguments.

    Returns:
        The registered ``arch.tag`` names.
    """
    if tags is None:
        from protozoo.zoo_tags import TAGS as tags
    names = []
    for name, row in tags.items():
        cfg = tag_cfg(name, row)
        registry.register_pretrained(cfg, model_args=dict(row["model_args"]))
        names.append(cfg.name)
    return names


def model_card(name: str) -> str | None:
    """The model card (``README.md``) of a trained zoo model, or None when its weights are not found."""
    from protozoo.hub import WeightsNotFoundError, locate_weights

    try:
        card = locate_weights(registry.resolve(name)) / CARD_NAME
    except WeightsNotFoundError:
        return None
    return card.read_text() if card.is_file() else None
