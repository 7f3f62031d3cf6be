"""Part consistency of prototypes (Huang et al., ICCV 2023).

A prototype of class c is *consistent* when one object part falls inside the box around the peak
of its map in at least ``mu`` of the class-c images where that part is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from protozoo.evaluate._checks import check_range
from protozoo.evaluate._parts import PartCounts, jsonable, pick_view, scan_parts

DEFAULT_MU = 0.8


@dataclass
class ConsistencyResult:
    """Consistency of every prototype on one view.

    Attributes:
        score: Percentage (0-100) of evaluated prototypes that are consistent.
        consistent: (P,) bool.
        best_part: (P,) index of the part with the highest ratio (-1 when not evaluated).
        best_ratio: (P,) that ratio (NaN when not evaluated).
        ratios: (P, K) share of the class's images with part k visible where it is inside the box
            (NaN where part k is never visible in the class).
        evaluated: (P,) bool, False for prototypes whose class has no image with a visible part
            in the dataset; they are left out of ``score`` (the reference code counts them as
            inconsistent: ``100 * consistent.float().mean()`` is its figure).
        mu: The threshold used.
        half_size: The box half side used, in pixels.
        keypoints: The keypoint convention used, ``"float"`` or ``"truncate"``.
        view: The view evaluated.
    """

    score: float
    consistent: Tensor
    best_part: Tensor
    best_ratio: Tensor
    ratios: Tensor
    evaluated: Tensor
    mu: float
    half_size: int
    keypoints: str
    view: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: score, options and the per-prototype best part and ratio."""
        return jsonable(
            {
                "score": self.score,
                "mu": self.mu,
                "half_size": self.half_size,
                "keypoints": self.keypoints,
                "view": self.view,
                "best_part": self.best_part,
                "best_ratio": self.best_ratio,
                "consistent": self.consistent,
            }
        )


def check_mu(mu: float) -> float:
    """``mu`` is a share of images: in (0, 1] (0.8 in the paper)."""
    return check_range(
        "mu", mu, 0.0, 1.0, low_open=True, meaning="the share of a class's images a part must be in the box in"
    )


def consistency_from_counts(counts: PartCounts, *, mu: float = DEFAULT_MU, view: str = "image") -> ConsistencyResult:
    """Turns the counts of :func:`~protozoo.evaluate._parts.scan_parts` into a :class:`ConsistencyResult`."""
    check_mu(mu)
    seen = counts.visible > 0  # (P, K)
    ratios = torch.where(seen, counts.inside / counts.visible.clamp_min(1), torch.nan)  # (P, K)
    best_ratio, best_part = torch.where(seen, ratios, -1.0).max(dim=1)  # (P,), (P,)
    evaluated = seen.any(dim=1)  # (P,)
    best_ratio = torch.where(evaluated, best_ratio, torch.nan)
    best_part = torch.where(evaluated, best_part, -1)
    consistent = evaluated & (best_ratio >= mu)
    score = 100.0 * consistent[evaluated].float().mean().item() if evaluated.any() else float("nan")
    return ConsistencyResult(
        score=score,
        consistent=consistent.cpu(),
        best_part=best_part.cpu(),
        best_ratio=best_ratio.cpu(),
        ratios=ratios.cpu(),
        evaluated=evaluated.cpu(),
        mu=mu,
        half_size=counts.half_size,
        keypoints=counts.keypoints,
        view=view,
    )


def consistency(
    model: nn.Module,
    dataset: Dataset,
    *,
    mu: float = DEFAULT_MU,
    half_size: int | None = None,
    keypoints: str = "float",
    batch_size: int = 32,
    device: torch.device | str | None = None,
    view: str | None = None,
    num_workers: int = 0,
) -> ConsistencyResult:
    """Part consistency score of a prototype model (Huang et al., ICCV 2023).

    For every image and every prototype of the image's class: the prototype's similarity map is
    upsampled bicubically to the input size (``align_corners=False``), a box of half side
    ``half_size`` is put around its argmax and clipped to the image, and the visible parts inside
    it (bounds inclusive) are recorded. Prototype p of class c is consistent iff
    ``max_k ratio_k >= mu`` with ``ratio_k`` = #(class-c images where part k is visible and
    inside p's box) / #(class-c images where part k is visible).

    Args:
        model: A prototype model (see :func:`~protozoo.evaluate._parts.prototype_maps`).
        dataset: Items with ``image`` (normalised), ``label``, ``parts`` (K, 2) pixel (x, y) and
            ``parts_visible`` (K,).
        mu: Share of the class's images a part must be inside the box in (0.8 in the paper).
        half_size: Box half side in pixels; None uses ``round(36 * H / 224)`` (the paper's 72 px
            box at 224 px, scaled with the input height H).
        keypoints: ``"float"`` (default) tests the keypoints as given against the box
            ``[p - h, p + h]``; ``"truncate"`` truncates them to integers first, as the reference
            code does (``int()``), which makes the box effectively ``[p - h, p + h + 1)``.
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.
        view: Which view to score for multi-view models; None for single-view models.
        num_workers: DataLoader worker processes loading the items (0: in this process).

    Returns:
        A :class:`ConsistencyResult`; ``score`` is 0-100.
    """
    check_mu(mu)
    counts = scan_parts(
        model,
        dataset,
        half_size=half_size,
        keypoints=keypoints,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
    )
    view = pick_view(list(counts), view)
    return consistency_from_counts(counts[view], mu=mu, view=view)
