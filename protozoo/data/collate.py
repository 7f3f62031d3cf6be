"""Batching sample dicts whose keys vary (absent and ``None`` values dropped, views recursed); moving batches to a device."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate sample dicts into a batch dict.

    Keys present (and not ``None``) in every item are kept: equal-shape tensors are stacked,
    numbers become a tensor, dicts (``views``) are collated recursively, anything else (ids,
    paths, boxes of varying length) stays a list.
    """
    keys = [k for k in items[0] if all(item.get(k) is not None for item in items)]
    batch: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, Tensor) and all(isinstance(v, Tensor) and v.shape == first.shape for v in values):
            batch[key] = torch.stack(values)
        elif isinstance(first, bool):
            batch[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, int):
            batch[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(first, float):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        elif isinstance(first, dict):
            batch[key] = collate_items(values)
        else:
            batch[key] = values
    return batch


def to_device(batch: Any, device: torch.device | str) -> Any:
    """``batch`` with every tensor moved to ``device``, recursing through dicts (``views``); other values as they are."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch
