"""Model families; importing a family module registers its entrypoints."""

from protozoo.models.protopnet import ProtoPNet, ProtoPNetConfig

__all__ = ["ProtoPNet", "ProtoPNetConfig"]
