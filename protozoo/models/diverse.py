"""ProtoPNet with diverse prototypes: every prototype from a different training image.

The architecture is ProtoPNet's; what differs is training (``protozoo.train``): pushes use
``unique_source="global"`` and a within-class penalty keeps a class's prototypes apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from protozoo.family import Family, register_family
from protozoo.models.protopnet import PAPER, ProtoPNet, ProtoPNetConfig

__all__ = ["DiverseProtoPNet", "DiverseProtoPNetConfig"]


@dataclass
class DiverseProtoPNetConfig(ProtoPNetConfig):
    arch: str = "protopnet_diverse"


class DiverseProtoPNet(ProtoPNet):
    """ProtoPNet whose family trains with unique-source pushes and a prototype diversity penalty."""

    config_class = DiverseProtoPNetConfig


register_family(
    Family(
        name="protopnet_diverse",
        model_class=DiverseProtoPNet,
        title="ProtoPNet with diverse prototypes",
        paper=PAPER,
        loss="protozoo.train.losses_medical:diverse_loss",
        recipe={"unique_source": "global"},
    )
)
