"""The foreground of an image (the breast, the fundus disc, the object): where prototypes may come from.

Synthetic datasets know it exactly and give it as the item key ``foreground`` (1, H, W). For
other images the rule is automatic (:func:`automatic_foreground`): Otsu's threshold of the
channel-mean image, then only the largest connected component of the pixels above it, so a
burned-in text label, a ruler or a bright corner (small components apart from the tissue) is
not foreground. Push (``push_prototypes(foreground=True)``, ``Recipe.push_foreground``) and the
losses (``LossWeights.foreground_pooling``) read the foreground on the latent grid through
:func:`foreground_cells`; a model built with ``foreground_only=True`` applies the automatic rule in
every forward (training and inference), so its prototypes can only ever match the foreground.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "automatic_foreground",
    "batch_foreground_cells",
    "foreground_cells",
    "foreground_of",
    "lesion_cells",
    "otsu_threshold",
]

# A latent cell is foreground when at least this share of its pixels is.
CELL_SHARE = 0.5


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's (1979) threshold of a 1-D array: the cut maximising the between-class variance."""
    values = values.astype(np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return high
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = counts.cumsum()  # pixels at or below each bin
    total = weight[-1]
    mass = (counts * centres).cumsum()
    w0, w1 = weight[:-1], total - weight[:-1]
    valid = (w0 > 0) & (w1 > 0)
    mean0 = np.where(valid, mass[:-1] / np.maximum(w0, 1), 0.0)
    mean1 = np.where(valid, (mass[-1] - mass[:-1]) / np.maximum(w1, 1), 0.0)
    between = np.where(valid, w0 * w1 * (mean0 - mean1) ** 2, -1.0)
    return float(edges[1:][:-1][between.argmax()])


def automatic_foreground(image: Tensor) -> Tensor:
    """(C, H, W) or (B, C, H, W) images -> (H, W) / (B, H, W) bool foreground by the module's rule.

    Otsu's threshold of the channel mean (any normalisation: the rule is invariant to a positive
    affine change of intensity), then the largest 8-connected component above it.
    """
    from scipy import ndimage

    if image.ndim == 4:
        return torch.stack([automatic_foreground(one) for one in image])
    gray = image.detach().float().mean(dim=0).cpu().numpy()  # (H, W)
    above = gray > otsu_threshold(gray)
    labels, count = ndimage.label(above, structure=np.ones((3, 3)))
    if count == 0:
        return torch.ones(gray.shape, dtype=torch.bool, device=image.device)
    sizes = np.bincount(labels.ravel())[1:]
    return torch.from_numpy(labels == 1 + int(sizes.argmax())).to(image.device)


def foreground_of(batch: dict[str, Any]) -> Tensor:
    """(B, H, W) bool foreground of a (single-view) batch: its ``foreground`` key, else the automatic rule."""
    given = batch.get("foreground")
    if given is not None:
        given = torch.as_tensor(given)
        return (given.amax(dim=1) if given.ndim == 4 else given) > 0.5
    return automatic_foreground(batch["image"])


def foreground_cells(foreground: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, H, W) pixel foreground -> (B, h, w) bool latent cells at least half foreground.

    An image with no such cell keeps every cell (a tiny object is never left without candidates).
    """
    share = F.adaptive_avg_pool2d(foreground.float()[:, None], size)[:, 0]  # (B, h, w)
    cells = share >= CELL_SHARE
    empty = ~cells.flatten(1).any(dim=1)  # (B,)
    return cells | empty[:, None, None]


def batch_foreground_cells(batch: dict[str, Any], size: tuple[int, int]) -> Tensor:
    """(B, h, w) bool foreground cells of a single-view batch (see :func:`foreground_of`)."""
    return foreground_cells(foreground_of(batch), size)


def lesion_cells(batch: dict[str, Any], size: tuple[int, int], *, per_type: bool = False) -> Tensor | None:
    """(B, h, w) bool: on an image with a lesion ``mask``, its lesion cells (those holding at least half
    the largest lesion share of any of its cells); every cell on an image without a lesion. None
    when the batch has no masks.

    With ``per_type`` and (B, L, H, W) masks of L lesion types: (B, L, h, w), the same rule for each
    type on its own mask (every cell where the image lacks that type), so a prototype of lesion l
    can be given the cells of lesion l, not of any finding.
    """
    masks = batch.get("mask")
    if masks is None:
        return None
    masks = torch.as_tensor(masks).float()
    if per_type and masks.ndim == 4:
        lesion = masks > 0.5  # (B, L, H, W)
        share = F.adaptive_avg_pool2d(lesion.float(), size)  # (B, L, h, w)
        peak = share.flatten(2).amax(dim=2)[..., None, None]  # (B, L, 1, 1)
        return torch.where(peak > 0, share >= 0.5 * peak, torch.ones_like(share, dtype=torch.bool))
    lesion = (masks.amax(dim=1) if masks.ndim == 4 else masks) > 0.5  # (B, H, W)
    share = F.adaptive_avg_pool2d(lesion.float()[:, None], size)[:, 0]  # (B, h, w)
    peak = share.flatten(1).amax(dim=1)[:, None, None]  # (B, 1, 1)
    return torch.where(peak > 0, share >= 0.5 * peak, torch.ones_like(share, dtype=torch.bool))
