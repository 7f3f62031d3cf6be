"""The ProtoPNet head, exact to Chen et al. 2019 ("This looks like that", NeurIPS).

features (B, C, H, W) -> add-on -> latent z (B, D, H, W) -> distances to P prototypes (B, P, H, W)
-> global min-pool (B, P) -> similarity (B, P) -> bias-free last layer -> logits (B, K).
"""

from __future__ import annotations

import torch
from einops import reduce
from torch import Tensor, nn

from protozoo.heads._layers import make_add_on
from protozoo.outputs import ProtoOutput
from protozoo.similarity import make_similarity


def class_identity(prototypes_per_class: int, num_classes: int) -> Tensor:
    """(P, K) one-hot class of each prototype; prototypes belong to classes in contiguous blocks."""
    prototype_class = torch.arange(num_classes).repeat_interleave(prototypes_per_class)  # (P,)
    return nn.functional.one_hot(prototype_class, num_classes).float()


class ProtoPNetHead(nn.Module):
    """Add-on layers, a prototype layer and a bias-free last layer.

    Args:
        in_channels: Channels of the backbone feature map.
        num_classes: K.
        prototypes_per_class: Prototypes per class; P = prototypes_per_class * K.
        prototype_dim: Latent depth D.
        add_on: ``"bottleneck"`` or ``"regular"`` (see :func:`make_add_on`).
        add_on_norm: Standardise the backbone features before the add-on layers (see :func:`make_add_on`).
        similarity: ``"log"`` (the paper), ``"linear"``, ``"exp"`` or ``"cosine"``.
        temperature: T of the ``exp`` similarity.
        incorrect_class_connection: Initial last-layer weight from a prototype to the classes it
            does not belong to (-0.5 in the paper; its own class gets 1).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        prototypes_per_class: int = 10,
        prototype_dim: int = 128,
        add_on: str = "bottleneck",
        add_on_norm: bool = False,
        similarity: str = "log",
        temperature: float = 1.0,
        incorrect_class_connection: float = -0.5,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_prototypes = prototypes_per_class * num_classes
        self.incorrect_class_connection = incorrect_class_connection
        self.add_on = make_add_on(add_on, in_channels, prototype_dim, norm=add_on_norm)
        self.prototypes = nn.Parameter(torch.rand(self.num_prototypes, prototype_dim))  # (P, D), U[0, 1)
        self.register_buffer("prototype_identity", class_identity(prototypes_per_class, num_classes))  # (P, K)
        self.last_layer = nn.Linear(self.num_prototypes, num_classes, bias=False)
        self.distance, self.activation = make_similarity(similarity, temperature=temperature)
        self.reset_last_layer()

    @property
    def prototype_class(self) -> Tensor:
        """(P,) class index of each prototype."""
        return self.prototype_identity.argmax(dim=1)

    def reset_last_layer(self, incorrect_class_connection: float | None = None) -> None:
        """Set the last layer to 1 from each prototype to its class and ``incorrect`` to the others."""
        incorrect = (
            self.incorrect_class_connection if incorrect_class_connection is None else incorrect_class_connection
        )
        identity = self.prototype_identity.T  # (K, P)
        with torch.no_grad():
            self.last_layer.weight.copy_(identity + incorrect * (1 - identity))

    def distance_maps(self, z: Tensor, cells: Tensor | None = None) -> Tensor:
        """(B, D, H, W) latent -> (B, P, H, W) distances to the prototypes.

        With ``cells`` ((B, H, W) bool, the cells the prototypes may match), every other cell gets
        its map's largest distance over the image (no gradient), so it never wins the min-pool.
        """
        distances = self.distance(z, self.prototypes)  # (B, P, H, W)
        if cells is None:
            return distances
        largest = reduce(distances.detach(), "b p h w -> b p 1 1", "max")
        return torch.where(cells[:, None], distances, largest)

    def forward(self, features: Tensor, cells: Tensor | None = None) -> ProtoOutput:
        z = self.add_on(features)  # (B, D, H, W)
        distance_maps = self.distance_maps(z, cells)  # (B, P, H, W)
        min_distances = reduce(distance_maps, "b p h w -> b p", "min")
        similarities = self.activation(min_distances)  # (B, P)
        logits = self.last_layer(similarities)  # (B, K)
        return ProtoOutput(logits, similarities, min_distances, distance_maps)
