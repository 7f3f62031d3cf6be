"""``create_model``: an entrypoint builds the architecture, then weights are resolved (timm's split)."""

from __future__ import annotations

import os
from typing import Any

from protozoo import registry
from protozoo.models._base import ProtoModel
from protozoo.pretrained import PretrainedCfg


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    pretrained_backbone: bool = False,
    backbone_weights: str | os.PathLike | None = None,
    **overrides: Any,
) -> ProtoModel:
    """Build a registered model.

    Args:
        name: ``arch``, ``arch.tag`` or an alias (``protozoo.list_models()`` lists them).
        pretrained: Load the trained weights of ``name`` (see ``list_models(pretrained=True)``).
        pretrained_backbone: Load ImageNet weights into the backbone from the first offline
            source that has them; raises (listing the sources tried) when none does.
        backbone_weights: An explicit backbone weight file (a timm state dict); implies
            ``pretrained_backbone``.
        **overrides: Architecture arguments (``num_classes``, ``in_chans``, ``prototypes_per_class``,
            ``backbone``, ``similarity``...).

    Returns:
        The model, in training mode; ``model.pretrained_cfg`` says how to feed it.
    """
    cfg = registry.resolve(name)
    if pretrained:
        if not cfg.has_weights:
            trained = registry.list_models(f"{cfg.architecture}.*", pretrained=True)
            raise ValueError(
                f"model {name!r} has no trained weights yet"
                + (f"; trained tags: {', '.join(trained)}" if trained else "")
                + "; use pretrained=False (optionally with pretrained_backbone=True)"
            )
        from protozoo.hub import load_registered

        return load_registered(cfg, **overrides).train()
    model = registry.get_entrypoint(cfg.architecture)(**overrides)
    # Without pretrained weights the model carries no weight pointer: the named tag's input
    # settings when a tag was named, else the architecture's defaults.
    named_tag = registry.split_model_name(registry.list_aliases().get(name, name))[1]
    base = cfg.replace(weights_dir=None, hf_hub_id=None, file=None) if named_tag else registry.default_cfg(cfg.architecture)
    model.pretrained_cfg = adapt_channels(base, model.config.in_chans)
    if pretrained_backbone or backbone_weights is not None:
        from protozoo.backbone_weights import load_backbone_weights

        model.backbone_source = load_backbone_weights(model.backbone, backbone_weights)
    return model


def adapt_channels(cfg: PretrainedCfg, in_chans: int) -> PretrainedCfg:
    """The config with ``input_size``, ``mean`` and ``std`` for ``in_chans`` channels.

    One channel gets the mean of the RGB statistics (how grayscale images are fed to a backbone
    whose stem was summed over RGB, as timm adapts it).
    """
    if cfg.in_chans == in_chans:
        return cfg

    def per_channel(stats: tuple[float, ...]) -> tuple[float, ...]:
        return stats if len(stats) == in_chans else (sum(stats) / len(stats),) * in_chans

    return cfg.replace(input_size=(in_chans, *cfg.input_size[1:]), mean=per_channel(cfg.mean), std=per_channel(cfg.std))
