"""The zoo's trained models: every ``weights/<arch>.<tag>/`` folder registers itself as ``arch.tag``.

A folder holds what ``model.save_pretrained`` writes (``config.json``, ``model.safetensors``,
``prototypes.json``) plus ``README.md`` (the model card), ``recipe.json`` and ``golden.safetensors``
(a stored input and the outputs it must give). ``examples/build_zoo_model.py NAME`` writes one.
"""

from __future__ import annotations

import json
from pathlib import Path

from protozoo import registry
from protozoo.hub import CONFIG_NAME, weights_root
from protozoo.pretrained import PretrainedCfg

CARD_NAME = "README.md"
GOLDEN_NAME = "golden.safetensors"


def register_weights(root: Path | None = None) -> list[str]:
    """Register every ``arch.tag`` folder under ``root`` (default: the zoo's ``weights/``).

    Returns:
        The registered names; folders of unknown architectures are skipped.
    """
    root = Path(root) if root is not None else weights_root()
    names = []
    for folder in sorted(root.glob("*.*")) if root.is_dir() else []:
        arch, tag = registry.split_model_name(folder.name)
        if not (folder / CONFIG_NAME).is_file() or not tag or not registry.is_model(arch):
            continue
        config = json.loads((folder / CONFIG_NAME).read_text())
        cfg = PretrainedCfg.from_dict(config.get("pretrained_cfg", {})).replace(
            architecture=arch, tag=tag, weights_dir=folder.name, file=None)
        registry.register_pretrained(cfg, model_args=_architecture_args(config.get("model_args", {})))
        names.append(cfg.name)
    return names


def model_card(name: str) -> str | None:
    """The model card (``README.md``) of a trained zoo model, or None."""
    cfg = registry.resolve(name)
    if not cfg.weights_dir:
        return None
    card = weights_root() / cfg.weights_dir / CARD_NAME
    return card.read_text() if card.is_file() else None


def _architecture_args(model_args: dict) -> dict:
    """A saved config's architecture arguments, less ``arch`` (the entrypoint sets it)."""
    return {k: v for k, v in model_args.items() if k != "arch"}
