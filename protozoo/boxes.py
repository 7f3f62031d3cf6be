"""Boxes on images: ProtoPNet's 95th-percentile "high activation" box, and mask bounding boxes.

One convention everywhere (push provenance, explanations, evaluators, datasets): half-open pixel
boxes ``[x0, y0, x1, y1]`` of the input, ``image[..., y0:y1, x0:x1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from protozoo.resample import upsample_bicubic

__all__ = [
    "HIGH_ACTIVATION_PERCENTILE",
    "high_activation_box",
    "high_activation_boxes",
    "mask_boxes",
    "percentile",
    "span_boxes",
]

HIGH_ACTIVATION_PERCENTILE = 95.0  # ProtoPNet's find_high_activation_crop: the top 5% of the map
_CHUNK = 16  # maps upsampled at a time


def high_activation_boxes(similarity: Tensor, input_size: tuple[int, int]) -> Tensor:
    """ProtoPNet's high-activation crop of similarity maps.

    Args:
        similarity: (P, H, W) similarity maps.
        input_size: (H_in, W_in) to upsample to (bicubic, ``align_corners=False``, by
            :func:`upsample_bicubic`).

    Returns:
        (P, 4) long boxes [x0, y0, x1, y1], half-open, of the pixels >= the 95th percentile
        (linear interpolation, as ``numpy.percentile``).
    """
    boxes = []
    for chunk in similarity.split(_CHUNK):
        up = upsample_bicubic(chunk, input_size)  # (n, H_in, W_in)
        threshold = percentile(up.flatten(1), HIGH_ACTIVATION_PERCENTILE)[:, None]  # (n, 1)
        boxes.append(span_boxes(up.amax(dim=2) >= threshold, up.amax(dim=1) >= threshold))
    return torch.cat(boxes).cpu()


def percentile(x: Tensor, q: float) -> Tensor:
    """(N, M) -> (N,) q-th percentile of each row, linear interpolation (any M, unlike torch.quantile).

    One partial selection: the values from the lower order statistic up, then their two smallest."""
    position = q / 100 * (x.shape[1] - 1)
    lo = int(position)
    top = x.topk(x.shape[1] - lo, dim=1, sorted=False).values  # (N, M - lo): order statistics lo..M-1
    low_high = top.topk(min(2, top.shape[1]), dim=1, largest=False).values  # (N, 1 or 2) ascending
    low, high = low_high[:, 0], low_high[:, -1]
    return low + (position - lo) * (high - low)


def mask_boxes(mask: Tensor) -> Tensor:
    """(N, H, W) bool -> (N, 4) long half-open bounding boxes [x0, y0, x1, y1]; whole image if empty."""
    return span_boxes(mask.any(dim=2), mask.any(dim=1))


def span_boxes(rows: Tensor, cols: Tensor) -> Tensor:
    """(N, H) and (N, W) bool: the rows and columns a mask touches -> (N, 4) long boxes as :func:`mask_boxes`."""
    (height, width), rows, cols = (rows.shape[1], cols.shape[1]), rows.int(), cols.int()
    boxes = torch.stack(
        [cols.argmax(1), rows.argmax(1), width - cols.flip(1).argmax(1), height - rows.flip(1).argmax(1)], dim=1
    )
    whole = torch.tensor([0, 0, width, height], device=rows.device)
    return torch.where(rows.any(1)[:, None], boxes, whole)


def high_activation_box(heatmap: Tensor, percentile_: float = HIGH_ACTIVATION_PERCENTILE) -> tuple[int, int, int, int]:
    """Box of the pixels at or above the ``percentile_``-th percentile of one (H, W) map, already at the input size.

    ProtoPNet's ``find_high_activation_crop`` (numpy's percentile, linear interpolation).

    Returns:
        Half-open ``(x0, y0, x1, y1)``.
    """
    flat = heatmap.float().flatten()[None]  # (1, H W)
    hot = heatmap.float() >= percentile(flat, percentile_)[0]  # (H, W)
    return tuple(int(v) for v in mask_boxes(hot[None])[0])
