"""Statistics of a model's prototypes: source-image diversity, class purity of their nearest
patches, near-duplicate pairs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn
from torch.utils.data import Dataset

from protozoo.evaluate._checks import check_dataset_fits, check_whole
from protozoo.evaluate._parts import iterate_batches, jsonable, model_device, pick_view, prototype_maps
from protozoo.family import class_mask, family_of


@dataclass
class PrototypeStats:
    """What :func:`prototype_stats` measures.

    Attributes:
        num_prototypes: P.
        distinct_source_images: Distinct ``image_id`` in ``model.provenance`` (None before a push).
        distinct_nearest_images: Distinct dataset images holding some prototype's nearest patch.
        purity: (P,) share of the prototype's k nearest patches whose image has its class.
        mean_purity: Mean of ``purity``.
        nearest_images: (P, k) dataset index of the image of each nearest patch, nearest first.
        nearest_similarities: (P, k) their similarities (higher = nearer).
        duplicate_pairs: (i, j) with i < j of near-duplicate prototypes.
        k: Neighbours per prototype.
    """

    num_prototypes: int
    distinct_source_images: int | None
    distinct_nearest_images: int
    purity: Tensor
    mean_purity: float
    nearest_images: Tensor
    nearest_similarities: Tensor
    duplicate_pairs: list[tuple[int, int]]
    k: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (per-prototype purity and nearest images included)."""
        return jsonable(self.__dict__)


def duplicate_pairs(
    prototypes: Tensor, *, cosine: float = 0.99, distance: float | None = None
) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of near-duplicate prototype vectors.

    Args:
        prototypes: (P, D).
        cosine: A pair whose cosine similarity is >= ``cosine`` is a duplicate.
        distance: If given, a pair whose squared L2 distance is <= ``distance`` is one too.
    """
    unit = F.normalize(prototypes.float(), dim=1)
    close = unit @ unit.T >= cosine  # (P, P)
    if distance is not None:
        close |= torch.cdist(prototypes.float(), prototypes.float()).pow(2) <= distance
    i, j = torch.triu(close, diagonal=1).nonzero(as_tuple=True)
    return list(zip(i.tolist(), j.tolist()))


def prototype_stats(
    model: nn.Module,
    dataset: Dataset,
    k: int = 5,
    *,
    duplicate_cosine: float = 0.99,
    duplicate_distance: float | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    view: str | None = None,
) -> PrototypeStats:
    """Diversity, purity and redundancy of a model's prototypes.

    The k nearest patches of a prototype are the k latent patches over the whole dataset (every
    position of every image, several may come from one image) with the highest similarity, i.e.
    the smallest distance under the model's own distance (the similarity is a decreasing
    function of it). Purity is the share of them whose image's label is the prototype's class
    (for multi-hot labels: includes it; for a lesion head: shows the prototype's lesion).

    Args:
        model: A prototype model with ``prototypes`` (P, D) and ``prototype_class``.
        dataset: Items with ``image`` and ``label`` (normally the training set).
        k: Nearest patches per prototype.
        duplicate_cosine: Prototype pairs with cosine similarity >= this are near-duplicates.
        duplicate_distance: If given, pairs with squared L2 distance <= this are too.
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.
        view: Only this view's patches for multi-view models; None: the patches of every view.
    """
    check_whole("k", k)
    check_whole("batch_size", batch_size)
    check_dataset_fits(model, dataset)
    device = torch.device(device) if device is not None else model_device(model)
    family = family_of(model)
    labels_of = family.resolved("labels")  # the prototype classes of an item (a lesion head: its lesions)
    prototype_class = model.prototype_class.to(device)  # (P,)
    best = torch.empty(prototype_class.numel(), 0, device=device)  # (P, <=k) similarities
    best_image = torch.empty(prototype_class.numel(), 0, dtype=torch.long, device=device)  # (P, <=k)
    labels, offset = [], 0
    with torch.inference_mode():
        for batch in iterate_batches(dataset, batch_size, device):
            all_maps = prototype_maps(model, batch)
            views = list(all_maps) if view is None else [pick_view(list(all_maps), view)]
            maps = torch.cat([all_maps[v] for v in views], dim=3)  # (B, P, H, V W): every view's patches
            b, _, h, w = maps.shape
            image = repeat(torch.arange(offset, offset + b, device=device), "b -> p (b h w)", p=maps.shape[1], h=h, w=w)
            candidates = torch.cat([best, rearrange(maps.float(), "b p h w -> p (b h w)")], dim=1)
            best, order = candidates.topk(min(k, candidates.shape[1]), dim=1)  # (P, k)
            best_image = torch.cat([best_image, image], dim=1).gather(1, order)
            labels.append(torch.as_tensor(labels_of(batch)))
            offset += b
    if not labels:
        raise ValueError("the dataset is empty")
    member = class_mask(torch.cat(labels), len(family.class_names(model)))  # (N, C)
    purity = member[best_image, prototype_class[:, None].expand_as(best_image)].float().mean(dim=1)  # (P,)
    provenance = getattr(model, "provenance", None)
    duplicates = duplicate_pairs(model.prototypes.detach(), cosine=duplicate_cosine, distance=duplicate_distance)
    return PrototypeStats(
        num_prototypes=prototype_class.numel(),
        distinct_source_images=len({row["image_id"] for row in provenance}) if provenance else None,
        distinct_nearest_images=best_image[:, 0].unique().numel(),
        purity=purity.cpu(),
        mean_purity=purity.mean().item(),
        nearest_images=best_image.cpu(),
        nearest_similarities=best.cpu(),
        duplicate_pairs=duplicates,
        k=k,
    )
