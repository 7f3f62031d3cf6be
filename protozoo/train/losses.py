"""ProtoPNet's training objective (Chen et al. 2019): cross-entropy + cluster + separation + L1.

All terms take the model's forward output; none needs another forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


@dataclass
class LossWeights:
    """Coefficients of the loss terms; the defaults are the paper's (1, 0.8, -0.08, 1e-4).

    Attributes:
        cross_entropy: Weight of the classification loss.
        cluster: Weight of the cluster cost (pulls each image near a prototype of its class).
        separation: Weight of the separation cost; negative, so other classes' prototypes are pushed away.
        l1: Weight of the L1 penalty on last-layer connections to wrong classes (last-layer phase).
        orthogonality: Weight of the within-class prototype orthogonality penalty (0 = off).
        distillation: Weight of BRAIxProtoPNet++'s distillation hinge (global -> prototype branch).
        distillation_margin: Its margin.
        global_cross_entropy: Weight of BRAIxProtoPNet++'s global-branch cross-entropy.
        diversity: Weight of the diverse-prototype head's within-class similarity penalty.
        diversity_threshold: Cosine similarity above which two prototypes of a class are penalised.
        consistency: Weight of the multi-view head's SimSiam consistency loss between CC and MLO.
        lesion: Weight of the lesion head's multi-label BCE on the lesion logits.
    """

    cross_entropy: float = 1.0
    cluster: float = 0.8
    separation: float = -0.08
    l1: float = 1e-4
    orthogonality: float = 0.0
    distillation: float = 1.0
    distillation_margin: float = 0.2
    global_cross_entropy: float = 1.0
    diversity: float = 0.1
    diversity_threshold: float = 0.8
    consistency: float = 0.1
    lesion: float = 1.0


def own_class_mask(prototype_identity: Tensor, labels: Tensor) -> Tensor:
    """(P, K) prototype classes, (B,) labels -> (B, P) True where the prototype is of the image's class."""
    return prototype_identity[:, labels].T.bool()


def cluster_cost(min_distances: Tensor, own: Tensor) -> Tensor:
    """Mean over images of the smallest min-distance to a prototype of the image's class.

    Args:
        min_distances: (B, P).
        own: (B, P) mask of own-class prototypes.
    """
    return min_distances.masked_fill(~own, float("inf")).amin(dim=1).mean()


def separation_cost(min_distances: Tensor, own: Tensor) -> Tensor:
    """Mean over images of the smallest min-distance to a prototype of another class."""
    return min_distances.masked_fill(own, float("inf")).amin(dim=1).mean()


def l1_wrong_class(last_layer_weight: Tensor, prototype_identity: Tensor) -> Tensor:
    """L1 norm of the last layer's (K, P) weights from prototypes to classes they do not belong to."""
    return (last_layer_weight * (1 - prototype_identity.T)).abs().sum()


def orthogonality(prototypes: Tensor, prototypes_per_class: int) -> Tensor:
    """Sum over classes of ||P_c P_c^T - I||_F^2 for the unit-normalised prototypes of class c."""
    unit = rearrange(F.normalize(prototypes, dim=1), "(k m) d -> k m d", m=prototypes_per_class)
    gram = unit @ unit.transpose(1, 2)  # (K, m, m)
    eye = torch.eye(prototypes_per_class, device=prototypes.device)
    return (gram - eye).pow(2).sum()


def protopnet_loss(model, output, batch: dict, weights: LossWeights, phase: str = "joint") -> tuple[Tensor, dict[str, float]]:
    """The weighted sum of the terms, and each term's value for logging.

    Args:
        model: The (unwrapped) ProtoPNet.
        output: Its :class:`~protozoo.outputs.ProtoOutput` on the batch.
        batch: The batch; ``batch["label"]`` (B,) class indices.
        weights: Loss coefficients; terms whose weight is 0 are not computed.
        phase: The schedule phase (every ProtoPNet phase uses the same objective; the L1 term
            only matters while the last layer trains).
    """
    labels = batch["label"]
    identity = model.head.prototype_identity  # (P, K)
    own = own_class_mask(identity, labels)
    terms: dict[str, Tensor] = {"cross_entropy": F.cross_entropy(output.logits, labels)}
    if weights.cluster:
        terms["cluster"] = cluster_cost(output.min_distances, own)
    if weights.separation:
        terms["separation"] = separation_cost(output.min_distances, own)
    if weights.l1:
        terms["l1"] = l1_wrong_class(model.last_layer.weight, identity)
    if weights.orthogonality:
        terms["orthogonality"] = orthogonality(model.prototypes, model.config.prototypes_per_class)
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: value.item() for name, value in terms.items()}
