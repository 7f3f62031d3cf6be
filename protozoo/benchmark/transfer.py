"""Transfer learning: which ProtoPNet a backbone name means, and freezing its first feature stages."""

from __future__ import annotations

import functools
import types

import timm
from torch import nn

from protozoo.backbones import Backbone


def protopnet_name(backbone: str) -> str:
    """The registered ProtoPNet model of a backbone name (``resnet18`` -> ``protopnet_resnet18``).

    Raises:
        ValueError: No such ProtoPNet, naming the backbones there are.
    """
    import protozoo
    from protozoo.family import family_of_arch
    from protozoo.registry import resolve

    name = backbone if backbone.startswith("protopnet_") else f"protopnet_{backbone}"
    known = [
        n for n in protozoo.list_models("protopnet_*") if family_of_arch(resolve(n).architecture).name == "protopnet"
    ]
    if name not in known:
        raise ValueError(
            f"no ProtoPNet model for backbone {backbone!r}; backbones: "
            + ", ".join(n.removeprefix("protopnet_") for n in known)
        )
    return name


@functools.cache
def _stage_modules(name: str) -> tuple[str, ...]:
    return tuple(info["module"] for info in timm.create_model(name, pretrained=False).feature_info)


def stage_modules(backbone: Backbone) -> list[str]:
    """Module names of the timm model's feature stages, shallow first (its ``feature_info``)."""
    return list(_stage_modules(backbone.name))


def frozen_stage_parameters(backbone: Backbone, stages: int) -> list[nn.Parameter]:
    """The parameters of the stem and the first ``stages`` feature stages of ``backbone``.

    Parameters are registered in execution order in timm's CNNs: the frozen ones run up to the
    last parameter of the module that emits stage ``stages`` (ResNet stage 1 is the stem's
    ``act1``, which has none: up to the stem's last), so a DenseNet's transition layer after
    a frozen block, which downsamples for the next stage, trains. ``features_only`` bodies name
    ``features.denseblock1`` ``features_denseblock1``: both match.
    """
    if stages <= 0:
        return []
    modules = stage_modules(backbone)
    named = list(backbone.body.named_parameters())
    if stages >= len(modules):
        return [param for _, param in named]
    last = [i for i, (name, _) in enumerate(named) if name.startswith(_prefixes(modules[stages - 1]))]
    if last:
        return [param for _, param in named[: last[-1] + 1]]
    following = _prefixes(modules[stages])
    boundary = next((i for i, (name, _) in enumerate(named) if name.startswith(following)), len(named))
    return [param for _, param in named[:boundary]]


def _prefixes(module: str) -> tuple[str, ...]:
    return (module + ".", module.replace(".", "_") + ".", "body." + module + ".")


def freeze_protopnet_stages(model: nn.Module, stages: int) -> int:
    """Keep the first ``stages`` backbone stages of a ProtoPNet at their initial weights through ``fit``.

    ``fit`` sets ``requires_grad`` per phase from ``model.parameter_groups()``, so the frozen
    parameters leave the ``backbone`` group (of this instance only): no phase trains them and no
    optimizer holds them (no weight decay either). Returns the number of frozen tensors.
    """
    frozen = frozen_stage_parameters(model.backbone, stages)
    if not frozen:
        return 0
    ids = {id(p) for p in frozen}
    groups_of_class = type(model).parameter_groups

    def parameter_groups(self) -> dict[str, list]:
        groups = groups_of_class(self)
        groups["backbone"] = [p for p in groups["backbone"] if id(p) not in ids]
        return groups

    model.parameter_groups = types.MethodType(parameter_groups, model)
    for param in frozen:
        param.requires_grad_(False)
    return len(frozen)
