"""Losses of the BRAIxProtoPNet++ and diverse-prototype families, built on ProtoPNet's terms."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from protozoo.train.losses import LossWeights, protopnet_loss


def distillation_hinge(global_logits: Tensor, prototype_logits: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Mean of ``max(0, p_global[y] - p_prototype[y] + margin)``.

    The global branch is the teacher (detached): the prototype branch is pushed to be at least as
    confident in the true class as the global branch, by ``margin``, as we read Wang et al. 2022.
    """
    p_global = global_logits.detach().softmax(dim=1).gather(1, labels[:, None]).squeeze(1)  # (B,)
    p_proto = prototype_logits.softmax(dim=1).gather(1, labels[:, None]).squeeze(1)  # (B,)
    return (p_global - p_proto + margin).clamp_min(0).mean()


def braix_loss(
    model, output, batch: dict, weights: LossWeights, phase: str = "joint"
) -> tuple[Tensor, dict[str, float]]:
    """Stage ``global``: the global branch's cross-entropy alone. Other phases: ProtoPNet's terms on
    the prototype branch, plus the global cross-entropy and the distillation hinge."""
    labels = batch["label"]
    global_ce = F.cross_entropy(output.global_logits, labels)
    if phase == "global":
        return weights.global_cross_entropy * global_ce, {"global_cross_entropy": global_ce.item()}
    total, terms = protopnet_loss(model, replace(output, logits=output.prototype_logits), batch, weights, phase)
    hinge = distillation_hinge(output.global_logits, output.prototype_logits, labels, weights.distillation_margin)
    total = total + weights.global_cross_entropy * global_ce + weights.distillation * hinge
    return total, terms | {"global_cross_entropy": global_ce.item(), "distillation": hinge.item()}


def prototype_diversity(prototypes: Tensor, prototypes_per_class: int, threshold: float) -> Tensor:
    """Mean over same-class prototype pairs of ``max(0, cos(p_i, p_j) - threshold)``."""
    unit = rearrange(F.normalize(prototypes, dim=1), "(k m) d -> k m d", m=prototypes_per_class)
    cos = unit @ unit.transpose(1, 2)  # (K, m, m)
    pairs = torch.triu(torch.ones(prototypes_per_class, prototypes_per_class, dtype=torch.bool), diagonal=1)
    if not pairs.any():
        return prototypes.new_zeros(())
    return (cos[:, pairs] - threshold).clamp_min(0).mean()


def diverse_loss(
    model, output, batch: dict, weights: LossWeights, phase: str = "joint"
) -> tuple[Tensor, dict[str, float]]:
    """ProtoPNet's objective plus the within-class diversity penalty."""
    total, terms = protopnet_loss(model, output, batch, weights, phase)
    if weights.diversity:
        penalty = prototype_diversity(model.prototypes, model.config.prototypes_per_class, weights.diversity_threshold)
        total = total + weights.diversity * penalty
        terms["diversity"] = penalty.item()
    return total, terms
