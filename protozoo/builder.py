"""``create_model`` and ``load``: an entrypoint builds the architecture, then weights are resolved (timm's split).

``load`` takes an alias, ``arch[.tag]``, a local folder or ``hf-hub:org/repo[@revision]`` (read
through huggingface_hub's cache, so it works offline once cached). A name builds the same
architecture in both: the one its trained weights were saved with, if it resolves to trained weights.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from protozoo import registry
from protozoo.backbone_weights import BackboneWeightsNotFound, load_backbone_weights
from protozoo.hub import UntrainedWarning, check_model_args, hub_snapshot, load_pretrained, load_registered
from protozoo.models._base import ProtoModel
from protozoo.pretrained import PretrainedCfg, adapt_channels


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
        name: ``arch``, ``arch.tag`` or an alias (``protozoo.list_models()`` lists them). A tag or
            an alias builds the architecture its weights were trained with, the one ``load(name)``
            gives (a tag names weights, never another architecture); ``arch`` its defaults.
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
        return load_registered(cfg, requested=name, **overrides).train()
    # A tag, or an alias (which names one model), builds the architecture of the weights it names:
    # what load(name) gives. A bare architecture name builds the architecture's defaults.
    named = name in registry.list_aliases() or bool(registry.split_model_name(name)[1])
    arguments = {**(registry.model_args(cfg) if named else {}), **overrides}
    check_model_args(cfg.architecture, arguments, f"create_model({name!r})", trusted=True)  # sizes before allocation
    model = registry.get_entrypoint(cfg.architecture)(**arguments)
    # Without pretrained weights the model carries no weight pointer: the named model's input
    # settings, else the architecture's defaults.
    base = cfg.replace(weights_dir=None, hf_hub_id=None, file=None) if named else registry.default_cfg(cfg.architecture)
    model.pretrained_cfg = adapt_channels(base, model.config.in_chans)
    if pretrained_backbone or backbone_weights is not None:
        model.backbone_source = load_backbone_weights(model.backbone, backbone_weights)
    return model


def load(name: str | Path, *, cache_dir: str | Path | None = None, **overrides: Any) -> ProtoModel:
    """Load a model by alias, ``arch[.tag]``, local folder or ``hf-hub:org/repo[@revision]``.

    A tag (or an alias, or an architecture with a trained tag) loads its trained weights from the
    first place :func:`protozoo.hub.locate_weights` finds them (``$PROTOZOO_WEIGHTS``, the source
    checkout's ``weights/``, the Hugging Face cache, a Hub download when online) and raises
    :class:`~protozoo.hub.WeightsNotFoundError` naming those places when none has them: never an
    untrained model in their place. Only an architecture with no trained tag at all is built
    untrained (its head untrained; its backbone from ImageNet where an offline source exists),
    with an :class:`UntrainedWarning` saying so.

    Args:
        name: What to load.
        cache_dir: Hugging Face cache folder for ``hf-hub:`` names and tags' ``hf_hub_id``
            (default: ``$HF_HUB_CACHE`` or huggingface_hub's usual cache).
        **overrides: Architecture arguments (see :func:`load_pretrained`).

    Returns:
        The model in eval mode.

    Raises:
        WeightsNotFoundError: A tag whose weights are nowhere to be found.
    """
    name = str(name)
    if name.startswith("hf-hub:"):
        return load_pretrained(hub_snapshot(name.removeprefix("hf-hub:"), cache_dir), **overrides)
    path = Path(name)
    if path.is_dir():
        return load_pretrained(path, **overrides)
    if not registry.is_model(name) and (os.sep in name or path.suffix):
        raise FileNotFoundError(f"{name!r} is neither a model folder nor a registered model name")
    cfg = registry.resolve(name)
    if cfg.has_weights:
        return load_registered(cfg, cache_dir=cache_dir, requested=name, **overrides)
    return _load_untrained(name, cfg, overrides)


def _load_untrained(name: str, cfg: PretrainedCfg, overrides: dict[str, Any]) -> ProtoModel:
    try:
        model = create_model(cfg.name, pretrained_backbone=True, **overrides)
        backbone = f"its backbone has ImageNet weights from {model.backbone_source}"
    except BackboneWeightsNotFound:
        model = create_model(cfg.name, **overrides)
        backbone = "its backbone is randomly initialised too (no offline ImageNet weights for it)"
    warnings.warn(
        f"{name!r} has no trained weights yet: built the architecture with an untrained prototype head; "
        f"{backbone}. Fine-tune it before use (protozoo train).",
        UntrainedWarning,
        stacklevel=3,
    )
    return model.eval()
