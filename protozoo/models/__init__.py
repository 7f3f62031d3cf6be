"""Model families; importing a family module registers its entrypoints."""

from protozoo.models.braix import BRAIxConfig, BRAIxProtoPNet
from protozoo.models.diverse import DiverseProtoPNet, DiverseProtoPNetConfig
from protozoo.models.lesion import LesionConfig, LesionProtoPNet
from protozoo.models.multiview import MultiViewConfig, MultiViewProtoPNet
from protozoo.models.protopnet import ProtoPNet, ProtoPNetConfig

__all__ = [
    "BRAIxConfig",
    "BRAIxProtoPNet",
    "DiverseProtoPNet",
    "DiverseProtoPNetConfig",
    "LesionConfig",
    "LesionProtoPNet",
    "MultiViewConfig",
    "MultiViewProtoPNet",
    "ProtoPNet",
    "ProtoPNetConfig",
]
