"""What a prototype model's forward pass returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ProtoOutput:
    """Output of a ProtoPNet-style head.

    Attributes:
        logits: (B, num_classes).
        similarities: (B, P) max-pooled similarity of each prototype to the image; higher = more alike.
        min_distances: (B, P) min-pooled distance of each prototype to the image's latent patches.
        distance_maps: (B, P, H, W) distance of each prototype to each latent patch.
    """

    logits: Tensor
    similarities: Tensor
    min_distances: Tensor
    distance_maps: Tensor
