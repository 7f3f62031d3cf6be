"""Loss of the lesion-linked head: lesion BCE + diagnosis CE + multi-label cluster/separation + L1."""

from __future__ import annotations

import torch.nn.functional as F
from einops import reduce
from torch import Tensor

from protozoo.train.losses import LossWeights, fine_annotation_cost, l1_wrong_class, orthogonality


def lesion_targets(lesions: Tensor, lesion_names: list[str]) -> Tensor:
    """Check image-level multi-hot lesion labels: (B, L) in the order of ``lesion_names``, as floats.

    Raises:
        ValueError: Labels of the wrong shape, naming the expected lesion list.
    """
    width = lesions.shape[-1] if lesions.ndim else 0
    if lesions.ndim != 2 or width != len(lesion_names):
        raise ValueError(
            f"expected {len(lesion_names)} lesion labels per image in the order {list(lesion_names)}, "
            f"got {width} (lesion labels of shape {tuple(lesions.shape)})"
        )
    return lesions.float()


def per_lesion_min_distances(min_distances: Tensor, num_lesions: int) -> Tensor:
    """(B, P) -> (B, L): each image's smallest distance to a prototype of each lesion (contiguous blocks)."""
    return reduce(min_distances, "b (l m) -> b l", "min", l=num_lesions)


def lesion_type_min_distances(output, batch: dict, model) -> Tensor:
    """(B, P) min-distances of each prototype over the cells of its own lesion type (where the image
    has that lesion; over every cell where it has not, as the forward pools).

    The lesion head's ``lesion_pooling``: a drusen prototype's cluster pull on a drusen image
    comes from the drusen cells (:func:`protozoo.foreground.lesion_cells` per type), not from the
    disc's rim or a vessel every image shares.
    """
    from protozoo.foreground import lesion_cells

    maps = output.distance_maps  # (B, P, h, w)
    cells = lesion_cells(batch, tuple(maps.shape[-2:]), per_type=True)
    if cells is None or cells.ndim != 4:
        return output.min_distances
    cells = cells.to(maps.device)[:, model.prototype_class.to(maps.device)]  # (B, L, h, w) -> (B, P, h, w)
    return maps.masked_fill(~cells, float("inf")).flatten(2).amin(dim=2)


def multilabel_cluster_cost(lesion_distances: Tensor, present: Tensor) -> Tensor:
    """Mean of the (B, L) distances over the (image, lesion) pairs where the lesion is present.

    ProtoPNet's cluster cost with every lesion as its own binary class: an image with a lesion
    should have a patch near one of that lesion's prototypes.
    """
    return (lesion_distances * present).sum() / present.sum().clamp_min(1)


def multilabel_separation_cost(lesion_distances: Tensor, present: Tensor) -> Tensor:
    """Mean of the (B, L) distances over the (image, lesion) pairs where the lesion is absent.

    Each lesion's own separation: an image without a lesion should have no patch near that
    lesion's prototypes. Taken per pair rather than the image's nearest absent lesion, so a
    prototype that matches background (present in every image) is pushed away by every image
    without its lesion; otherwise, with lesions present in most images, the cluster cost is met by
    background prototypes and the latent space collapses. Bounded: add-on latents lie in [0, 1]^D.
    """
    absent = ~present
    return (lesion_distances * absent).sum() / absent.sum().clamp_min(1)


def lesion_loss(
    model, output, batch: dict, weights: LossWeights, phase: str = "joint"
) -> tuple[Tensor, dict[str, float]]:
    """The weighted sum of the lesion head's terms, and each term's value for logging.

    Args:
        model: The (unwrapped) LesionProtoPNet.
        output: Its :class:`~protozoo.outputs.LesionOutput`.
        batch: ``lesions`` (B, L) multi-hot, ``label`` (B,) diagnosis.
        weights: ``lesion`` (BCE), ``cross_entropy`` (diagnosis), ``cluster``, ``separation``,
            ``l1`` (wrong-lesion last-layer weights), ``orthogonality``, ``fine_annotation``
            (IAIA-BL, each prototype against its lesion type's mask ``mask`` (B, L, H, W)),
            ``lesion_pooling`` (the cluster cost pools each prototype over its own lesion's cells,
            :func:`lesion_type_min_distances`; the separation cost keeps every cell, so a
            prototype that matches background is pushed away wherever it matches).
        phase: Unused: every phase has the same objective.
    """
    lesions = lesion_targets(batch["lesions"], model.lesion_names)  # (B, L)
    present = lesions > 0.5
    lesion_distances = per_lesion_min_distances(output.min_distances, model.num_lesions)  # (B, L)
    terms: dict[str, Tensor] = {
        "lesion": F.binary_cross_entropy_with_logits(output.lesion_logits, lesions),
        "cross_entropy": F.cross_entropy(output.logits, batch["label"]),
    }
    if weights.cluster:
        pulled = lesion_distances
        if weights.lesion_pooling:
            pooled = lesion_type_min_distances(output, batch, model)  # (B, P)
            pulled = per_lesion_min_distances(pooled, model.num_lesions)  # (B, L)
        terms["cluster"] = multilabel_cluster_cost(pulled, present)
    if weights.separation:
        terms["separation"] = multilabel_separation_cost(lesion_distances, present)
    if weights.l1:
        terms["l1"] = l1_wrong_class(model.last_layer.weight, model.head.prototype_identity)
    if weights.orthogonality:
        terms["orthogonality"] = orthogonality(model.prototypes, model.prototypes_per_lesion)
    if weights.fine_annotation and batch.get("mask") is not None:
        # each prototype against its own lesion type's mask (B, L, H, W) -> (B, P, H, W)
        lesion_class = model.prototype_class.to(present.device)
        masks = batch["mask"].float()[:, lesion_class]
        activations = model.head.activation(output.distance_maps)  # (B, P, h, w)
        terms["fine_annotation"] = fine_annotation_cost(activations, masks, present[:, lesion_class])
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: value.item() for name, value in terms.items()}
