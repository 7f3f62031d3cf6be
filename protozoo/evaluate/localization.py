"""Localization of explanation maps against lesion masks: pointing game, IoU, Dice and
activation precision, for prototype maps and post-hoc saliency maps alike."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange, reduce
from torch import Tensor, nn
from torch.utils.data import Dataset

from protozoo.evaluate._checks import check_dataset_fits, check_range, check_whole
from protozoo.evaluate._parts import (
    iterate_batches,
    jsonable,
    model_device,
    own_prototypes,
    pick_view,
    prototype_maps,
)
from protozoo.family import family_of
from protozoo.resample import upsample_bicubic

CLASS_SOURCES = ("true", "predicted")
METRICS = ("pointing_game", "iou", "dice", "activation_precision")


@dataclass
class LocalizationResult:
    """Localization scores, all in [0, 1], averaged over the images with a non-empty mask.

    Attributes:
        pointing_game: Share of images whose map peak lies inside a lesion.
        iou: Mean IoU of the thresholded map with the lesion mask.
        dice: Mean Dice of the thresholded map with the lesion mask.
        activation_precision: Mean share of the top ``top_fraction`` of the map's pixels inside
            a lesion (IAIA-BL's activation precision).
        per_image: ``{metric: (N,) tensor}`` with NaN for images without a lesion.
        evaluated: Number of images with a lesion (the denominator of the means).
        threshold: Threshold on the min-max normalised map.
        top_fraction: Fraction of pixels counted by the activation precision.
        details: How the maps were made (prototype choice, view), for reports.
    """

    pointing_game: float
    iou: float
    dice: float
    activation_precision: float
    per_image: dict[str, Tensor]
    evaluated: int
    threshold: float
    top_fraction: float
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (means, options and per-image scores)."""
        means = {name: getattr(self, name) for name in METRICS}
        options = {"evaluated": self.evaluated, "threshold": self.threshold, "top_fraction": self.top_fraction}
        return jsonable({**means, **options, **self.details, "per_image": self.per_image})


def _union_mask(masks: Tensor) -> Tensor:
    """(B, H, W) or (B, L, H, W) masks -> (B, H, W) bool union of the lesions."""
    return (masks.amax(dim=1) if masks.ndim == 4 else masks) > 0.5


def per_image_localization(
    maps: Tensor, masks: Tensor, *, threshold: float = 0.5, top_fraction: float = 0.05
) -> dict[str, Tensor]:
    """Per-image pointing hit, IoU, Dice and activation precision; NaN where the mask is empty.

    Args:
        maps: (B, h, w) maps, higher = more salient; upsampled bicubically to the mask size if
            their size differs.
        masks: (B, H, W) or (B, L, H, W) lesion masks (> 0.5 is lesion; lesions are united).
        threshold: A pixel is predicted lesion when the min-max normalised map is >= threshold.
        top_fraction: The activation precision looks at the ``ceil(top_fraction * H * W)``
            highest pixels.

    Returns:
        ``{"pointing_game", "iou", "dice", "activation_precision"}`` each (B,) float.
    """
    check_range("threshold", threshold, 0.0, 1.0, meaning="on the min-max normalised map")
    check_range("top_fraction", top_fraction, 0.0, 1.0, low_open=True, meaning="the share of pixels looked at")
    flat, target, predicted = _flat_maps(maps, masks, threshold)
    inter = (predicted & target).sum(dim=1).float()  # (B,)
    union = (predicted | target).sum(dim=1).float()
    sizes = predicted.sum(dim=1).float() + target.sum(dim=1).float()
    hits = target.gather(1, flat.argmax(dim=1, keepdim=True))[:, 0].float()  # (B,)
    k = max(1, math.ceil(top_fraction * flat.shape[1]))
    precision = target.gather(1, flat.topk(k, dim=1).indices).float().mean(dim=1)  # (B,)
    has_lesion = target.any(dim=1)
    scores = {
        "pointing_game": hits,
        "iou": inter / union.clamp_min(1),
        "dice": 2 * inter / sizes.clamp_min(1),
        "activation_precision": precision,
    }
    return {name: torch.where(has_lesion, value, torch.nan) for name, value in scores.items()}


def _flat_maps(maps: Tensor, masks: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """(B, h, w) maps, masks -> (B, HW) maps at the mask size, (B, HW) bool lesion, (B, HW) bool
    thresholded map (min-max normalised map >= threshold): what every pixel score compares."""
    lesion = _union_mask(masks)  # (B, H, W)
    size = tuple(lesion.shape[-2:])
    maps = maps.float()
    if not torch.isfinite(maps).all():
        raise ValueError(
            "the explanation maps hold NaN or Inf values: no localization is scored from them; "
            "check the model's weights and inputs"
        )
    if tuple(maps.shape[-2:]) != size:
        maps = upsample_bicubic(maps, size)  # (B, H, W)
    flat, target = rearrange(maps, "b h w -> b (h w)"), rearrange(lesion, "b h w -> b (h w)")
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)  # (B, 1)
    predicted = (flat - low) / (high - low).clamp_min(1e-12) >= threshold  # (B, HW)
    return flat, target, predicted


PIXEL_METRICS = ("explanation_precision", "explanation_recall", "explanation_f1", "energy")


def per_image_pixel_scores(maps: Tensor, masks: Tensor, *, threshold: float = 0.5) -> dict[str, Tensor]:
    """Per-image pixel precision, recall and F1 of the thresholded map against the mask (the
    explainability F1 of the DermXDB dermatology study: the binarised map vs the experts'
    explanation map; per image it equals the Dice of :func:`per_image_localization`, precision and recall say
    which way it errs), and the energy share (Wang et al. 2020's energy-based pointing game: the
    part of the map's mass, after min-max normalisation, inside the mask). NaN where the mask is empty.

    Args:
        maps: (B, h, w) maps, higher = more salient (upsampled as in :func:`per_image_localization`).
        masks: (B, H, W) or (B, L, H, W) masks (> 0.5 is inside; lesions are united).
        threshold: A pixel is predicted inside when the min-max normalised map is >= threshold.

    Returns:
        ``{"explanation_precision", "explanation_recall", "explanation_f1", "energy"}`` each (B,) float.
    """
    check_range("threshold", threshold, 0.0, 1.0, meaning="on the min-max normalised map")
    flat, target, predicted = _flat_maps(maps, masks, threshold)
    hits = (predicted & target).sum(dim=1).float()  # (B,)
    precision = hits / predicted.sum(dim=1).clamp_min(1)
    recall = hits / target.sum(dim=1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)  # (B, 1)
    mass = (flat - low) / (high - low).clamp_min(1e-12)  # (B, HW) in [0, 1]
    energy = (mass * target).sum(dim=1) / mass.sum(dim=1).clamp_min(1e-12)
    scores = {"explanation_precision": precision, "explanation_recall": recall, "explanation_f1": f1, "energy": energy}
    has_mask = target.any(dim=1)
    return {name: torch.where(has_mask, value, torch.nan) for name, value in scores.items()}


def _summarise(
    per_image: dict[str, Tensor], threshold: float, top_fraction: float, details: dict
) -> LocalizationResult:
    per_image = {name: value.cpu() for name, value in per_image.items()}
    valid = ~per_image["iou"].isnan()
    means = {name: value[valid].mean().item() if valid.any() else float("nan") for name, value in per_image.items()}
    return LocalizationResult(**means, per_image=per_image, evaluated=int(valid.sum()), threshold=threshold,
                              top_fraction=top_fraction, details=details)  # fmt: skip


def localization_from_maps(
    maps: Tensor, masks: Tensor, *, threshold: float = 0.5, top_fraction: float = 0.05
) -> LocalizationResult:
    """Localization scores of any (B, H, W) saliency maps (prototype or post-hoc) against masks.

    Args:
        maps: (B, h, w) maps, higher = more salient (see :func:`per_image_localization`).
        masks: (B, H, W) or (B, L, H, W) lesion masks.
        threshold: Threshold on the min-max normalised map for IoU and Dice (default 0.5).
        top_fraction: Pixel fraction of the activation precision (default 0.05, as IAIA-BL).

    Returns:
        A :class:`LocalizationResult`; images with an empty mask are left out of the means.
    """
    per_image = per_image_localization(maps, masks, threshold=threshold, top_fraction=top_fraction)
    return _summarise(per_image, threshold, top_fraction, {})


def top_prototype_maps(model: nn.Module, batch: dict, maps: Tensor, class_source: str = "true") -> Tensor:
    """The map of each image's most activated prototype among those of the chosen class.

    Args:
        model: A prototype model.
        batch: The collated batch (``label`` for ``"true"``, the images for ``"predicted"``).
        maps: (B, P, h, w) similarity maps of one view.
        class_source: ``"true"``: prototypes of the label's class(es); ``"predicted"``: of the
            arg-max logit's class (lesion head: of the lesions present / predicted present, see
            :func:`~protozoo.evaluate._parts.own_prototypes`).

    Returns:
        (B, h, w) the chosen prototype's map per image.
    """
    if class_source not in CLASS_SOURCES:
        raise ValueError(f"class_source must be one of {CLASS_SOURCES}, got {class_source!r}")
    own = own_prototypes(model, batch, class_source).to(maps.device)  # (B, P)
    peak = reduce(maps, "b p h w -> b p", "max").masked_fill(~own, -torch.inf)  # (B, P)
    chosen = peak.argmax(dim=1)  # (B,)
    return maps[torch.arange(maps.shape[0], device=maps.device), chosen]  # (B, h, w)


def localization(
    model: nn.Module,
    dataset: Dataset,
    *,
    class_source: str = "true",
    threshold: float = 0.5,
    top_fraction: float = 0.05,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    view: str | None = None,
) -> LocalizationResult:
    """Localization of a prototype model's evidence against lesion masks.

    Per image the map is that of the most activated prototype (highest max-pooled similarity)
    of the image's true class (default; any positive class for multi-hot labels) or of the
    predicted class, upsampled bicubically to the input size; then see
    :func:`localization_from_maps`.

    Args:
        model: A prototype model (see :func:`~protozoo.evaluate._parts.prototype_maps`).
        dataset: Items with ``image``, ``label`` and ``mask`` (L, H, W).
        class_source: ``"true"`` or ``"predicted"``.
        threshold: Threshold on the min-max normalised map for IoU and Dice.
        top_fraction: Pixel fraction of the activation precision.
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.
        view: Score only this view of a multi-view model; None: every view (each view an image).

    Returns:
        A :class:`LocalizationResult`.
    """
    last: dict = {}  # one forward per batch, whichever views are scored

    def top_prototype(batch: dict, shown: str) -> Tensor:
        if last.get("batch") is not batch:
            last.update(batch=batch, maps=prototype_maps(model, batch))  # {view: (B, P, h, w)}
        return top_prototype_maps(model, batch, last["maps"][shown], class_source)  # (B, h, w)

    per_image = _score_views(
        model,
        dataset,
        top_prototype,
        threshold=threshold,
        top_fraction=top_fraction,
        batch_size=batch_size,
        device=device,
        view=view,
    )
    details = {"class_source": class_source, "view": view or "all", "map": "top prototype of the class"}
    return _summarise(per_image, threshold, top_fraction, details)


def mask_localization(
    model: nn.Module,
    dataset: Dataset,
    *,
    threshold: float = 0.5,
    top_fraction: float = 0.05,
    batch_size: int = 32,
    view: str | None = None,
) -> LocalizationResult:
    """The scores of a perfect explanation: each image's lesion mask taken as its map.

    The ceiling no map can pass on these images and scores: pointing game and IoU reach 1, but the
    activation precision of an image whose lesions cover less than ``top_fraction`` of it is their
    share of the ``top_fraction`` highest pixels (IAIA-BL's 95th percentile), so small lesions
    bound it below 1. Same images and views as :func:`localization` of ``model``.
    """

    def mask(batch: dict, shown: str) -> Tensor:
        return _union_mask(family_of(model).image_views(batch)[shown]["mask"].float()).float()  # (B, H, W)

    per_image = _score_views(
        model,
        dataset,
        mask,
        threshold=threshold,
        top_fraction=top_fraction,
        batch_size=batch_size,
        device="cpu",
        view=view,
    )
    return _summarise(per_image, threshold, top_fraction, {"view": view or "all", "map": "the lesion mask itself"})


def _score_views(
    model: nn.Module,
    dataset: Dataset,
    map_of,
    *,
    threshold: float,
    top_fraction: float,
    batch_size: int,
    device: torch.device | str | None,
    view: str | None,
) -> dict[str, Tensor]:
    """Per-image scores of ``map_of(batch, view) -> (B, h, w)`` against each view's masks, every view
    (or ``view``) of every batch: the one loop of :func:`localization` and :func:`mask_localization`."""
    check_dataset_fits(model, dataset)
    check_whole("batch_size", batch_size)
    device = torch.device(device) if device is not None else model_device(model)
    per_image: dict[str, list[Tensor]] = {name: [] for name in METRICS}
    with torch.inference_mode():
        for batch in iterate_batches(dataset, batch_size, device):
            views = family_of(model).image_views(batch)
            for shown in list(views) if view is None else [pick_view(list(views), view)]:
                items = views[shown]
                if "mask" not in items:
                    raise ValueError("localization needs items with a 'mask' (L, H, W); this dataset has none")
                maps = map_of(batch, shown)  # (B, h, w)
                scores = per_image_localization(maps, items["mask"], threshold=threshold, top_fraction=top_fraction)
                for name, value in scores.items():
                    per_image[name].append(value)
    if not per_image["iou"]:
        raise ValueError("the dataset is empty")
    return {name: torch.cat(values) for name, values in per_image.items()}
