"""Prototype heads: from a backbone feature map to logits and prototype evidence."""

from protozoo.heads.protopnet import ProtoPNetHead

__all__ = ["ProtoPNetHead"]
