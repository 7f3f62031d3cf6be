"""Single-view items from two-view (CC/MLO) breast items, for pushing multi-view prototypes."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

VIEWS = ("cc", "mlo")


class FlattenViews(Dataset):
    """Each breast item becomes two single-view items, CC then MLO.

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
            raise KeyError(f"breast {item.get('id', breast)!r} has no {name.upper()} view; FlattenViews needs both views")
        single = item["views"][name]
        return {"image": single["image"], "mask": single.get("mask"), "label": item["label"], "id": f"{item['id']}/{name}"}
