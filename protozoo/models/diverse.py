"""ProtoPNet with diverse prototypes: every prototype from a different training image.

The architecture is ProtoPNet's; what differs is training (``protozoo.train``): pushes use
``unique_source="global"`` and a within-class penalty keeps a class's prototypes apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from protozoo.models.protopnet import BACKBONES, PAPER, ProtoPNet, ProtoPNetConfig
from protozoo.pretrained import PretrainedCfg
from protozoo.registry import register_model

__all__ = ["DiverseProtoPNet", "DiverseProtoPNetConfig"]


@dataclass
class DiverseProtoPNetConfig(ProtoPNetConfig):
    arch: str = "protopnet_diverse"


class DiverseProtoPNet(ProtoPNet):
    """ProtoPNet whose family trains with unique-source pushes and a prototype diversity penalty."""

    config_class = DiverseProtoPNetConfig


def _make_entrypoint(suffix: str, timm_name: str, default_cfg: PretrainedCfg) -> None:
    arch = f"protopnet_diverse_{suffix}"

    def entrypoint(**overrides: Any) -> DiverseProtoPNet:
        return DiverseProtoPNet(replace(DiverseProtoPNetConfig(arch=arch, backbone=timm_name), **overrides))

    entrypoint.__name__ = entrypoint.__qualname__ = arch
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"Diverse-prototype ProtoPNet on timm ``{timm_name}``."
    register_model(entrypoint, default_cfg=default_cfg.replace(paper=PAPER))
    globals()[arch] = entrypoint


for _suffix, (_timm_name, _cfg) in BACKBONES.items():
    _make_entrypoint(_suffix, _timm_name, _cfg)
