"""Unique peak: each own prototype's map should have one clear peak, not two far-apart near-ties.

Huang et al.'s stability score (:func:`protozoo.evaluate.stability`) asks whether the peak of each
own-class prototype's map lands on the same parts after a little input noise. Once the map is fine
enough that the peak no longer drifts inside its cell, what is left is the peak *jumping*: two
cells far apart (the two ends of a long belly, a part and a look-alike distractor) are almost
equally similar, and the noise decides between them. This term asks for a margin between the peak
and its best rival outside a window around it, on images of the prototype's class::

    a = activation map of an own (image, prototype) pair, m = arg max a
    rival = max of a over the cells whose row or column lies more than `radius` cells from m's
    cost  = mean over own pairs of relu(margin - (a[m] - rival))

Cells within ``radius`` of the peak are free to be as similar as they like: a peak that moves to a
neighbour keeps its parts box (Huang et al.'s 72 px box at 224 px spans about 2 cells of a
stride-8 map on each side). The margin is in the units of the model's activation (for the log
similarity, log-similarity units). A pair without any cell outside the window costs nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def peak_rival_gap(activations: Tensor, radius: int) -> Tensor:
    """(B, P) peak minus best rival outside the window of ``radius`` cells (inf without any such cell).

    Args:
        activations: (B, P, h, w) activation maps (higher = more similar).
        radius: Half side, in cells, of the square window around the peak that holds no rivals.
    """
    _, _, h, w = activations.shape
    flat = rearrange(activations, "b p h w -> b p (h w)")
    peak_value, peak = flat.max(dim=-1)  # (B, P) each
    rows = torch.arange(h, device=flat.device).repeat_interleave(w)  # (h w,)
    cols = torch.arange(w, device=flat.device).repeat(h)  # (h w,)
    far = ((rows - (peak // w)[..., None]).abs() > radius) | ((cols - (peak % w)[..., None]).abs() > radius)
    rival = flat.masked_fill(~far, float("-inf")).amax(dim=-1)  # (B, P); -inf without a far cell
    return peak_value - rival


def unique_peak_cost(activations: Tensor, own: Tensor, margin: float = 1.0, radius: int = 2) -> Tensor:
    """The cost above.

    Args:
        activations: (B, P, h, w) activation maps of the batch.
        own: (B, P) bool, the (image, prototype) pairs scored (each image's own class).
        margin: The gap asked between the peak and its best rival.
        radius: The window's half side in cells.

    Returns:
        A scalar (0 when no pair is own).
    """
    gap = peak_rival_gap(activations, radius)  # (B, P)
    hinge = F.relu(margin - gap).nan_to_num(0.0)  # a masked map (-inf everywhere) costs nothing
    own = own.to(hinge.device)
    return (hinge * own).sum() / own.sum().clamp_min(1)


def with_unique_peak(model, output, batch: dict, weights, loss: Tensor, terms: dict) -> Tensor:
    """``loss`` plus ``weights.unique_peak`` x the cost of ``output``'s own-class maps (``terms`` gets it)."""
    from protozoo.evaluate._parts import own_prototypes

    activations = model.head.activation(output.distance_maps)  # (B, P, h, w)
    cost = unique_peak_cost(
        activations, own_prototypes(model, batch, "true"), weights.unique_peak_margin, weights.unique_peak_radius
    )
    terms["unique_peak"] = cost.item()
    return loss + weights.unique_peak * cost
