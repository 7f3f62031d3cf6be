"""Loss of the multi-view (CC/MLO) head: ProtoPNet's terms on the breast-level output + consistency."""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from protozoo.train.losses import LossWeights, l1_wrong_class, protopnet_loss


def multiview_loss(
    model, output, batch: dict, weights: LossWeights, phase: str = "joint"
) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy, cluster and separation on the breast-level logits / view-max similarities /
    view-min distances; L1 on the wrong-class weights of both last-layer blocks (view-max and
    co-occurrence); plus ``weights.consistency`` times the SimSiam loss (0 for a batch without a
    breast that has both views)."""
    total, terms = protopnet_loss(model, output, batch, replace(weights, l1=0.0), phase)
    identity = model.head.prototype_identity  # (P, K)
    if weights.l1:
        l1 = l1_wrong_class(model.last_layer.weight, identity)
        l1 = l1 + l1_wrong_class(model.cross_view.cooccurrence_layer.weight, identity)
        total = total + weights.l1 * l1
        terms["l1"] = l1.item()
    if output.consistency is not None and weights.consistency:
        total = total + weights.consistency * output.consistency
    terms["consistency"] = output.consistency.item() if output.consistency is not None else 0.0
    return total, terms
