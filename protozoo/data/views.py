"""The views of two-view (CC/MLO) breast items, each an image of its own.

A multi-view model's prototypes are single-view latent patches: push, the evaluators and the
gallery read a breast as its CC and MLO images (:func:`breast_views`, the multi-view family's
``views``); :class:`FlattenViews` makes a dataset of those single-view items.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

VIEWS = ("cc", "mlo")


def breast_views(batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{view: that view's image, mask, parts, with the breast's label and id "<breast id>/<view>"}``.

    Works on one item and on a collated batch alike. Items without ``views`` (already single
    views, e.g. from :class:`FlattenViews`) are one view: ``{"image": batch}``.
    """
    if "views" not in batch:
        return {"image": batch}
    out = {}
    for view, single in batch["views"].items():
        ids = batch.get("id", single.get("id"))
        out[view] = {**single, "label": batch["label"], "id": _suffixed(ids, view)}
        if "lesions" in batch:
            out[view]["lesions"] = batch["lesions"]
    return out


def _suffixed(ids: Any, view: str) -> Any:
    if ids is None:
        return None
    if isinstance(ids, (str, int)):
        return f"{ids}/{view}"
    return [f"{i}/{view}" for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]


class FlattenViews(Dataset):
    """Each breast item becomes two single-view items, CC then MLO (:func:`breast_views`).

    Item ``2 i + v`` holds ``image`` and ``mask`` of view v of breast i, the breast's ``label`` and
    ``id`` ``f"{breast id}/{view}"``. Every breast must have both views (``item["views"]``).

    Args:
        dataset: Breast items with ``views`` {"cc": {...}, "mlo": {...}}, ``label`` and ``id``.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(VIEWS) * len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        breast, view = divmod(index, len(VIEWS))
        item = self.dataset[breast]
        name = VIEWS[view]
        if name not in item.get("views", {}):
            raise KeyError(
                f"breast {item.get('id', breast)!r} has no {name.upper()} view; FlattenViews needs both views"
            )
        single = breast_views(item)[name]
        return {"image": single["image"], "mask": single.get("mask"), "label": single["label"], "id": single["id"]}
