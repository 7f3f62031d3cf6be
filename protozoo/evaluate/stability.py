"""Part stability of prototypes under input noise (Huang et al., ICCV 2023), and the one-pass
evaluation of consistency and stability together."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from protozoo.data.transforms import resolve_data_config
from protozoo.evaluate._checks import check_range
from protozoo.evaluate._parts import PartCounts, jsonable, pick_view, scan_parts
from protozoo.evaluate.consistency import DEFAULT_MU, ConsistencyResult, check_mu, consistency_from_counts

NOISE_SPACES = ("normalized", "pixel")


@dataclass
class StabilityResult:
    """Stability of every prototype on one view.

    Attributes:
        score: The stability score of Huang et al. (2023), 0-100: the mean over the prototypes
            with pairs of each prototype's percentage of own-class images whose parts-inside
            vector is unchanged by the noise (the aggregation of the paper's code,
            hqhQAQ/EvalProtoPNet ``evaluate_stability``).
        pooled: Percentage (0-100) of all (prototype, own-class image) pairs that are stable,
            pooled over the prototypes: it weighs each prototype by its class's image count, so
            it equals ``score`` only when every class has as many images. Not the paper's figure.
        per_prototype: (P,) fraction of the prototype's pairs that are stable (NaN without pairs).
        pairs: (P,) number of (prototype, image) pairs behind each fraction.
        noise_std: Std of the Gaussian noise.
        noise_clip: The noise is clipped to [-noise_clip, noise_clip].
        noise_space: ``"normalized"`` or ``"pixel"``.
        seed: Seed of the noise.
        half_size: The box half side used, in pixels.
        keypoints: The keypoint convention (see :func:`~protozoo.evaluate.consistency`).
        view: The view evaluated.
    """

    score: float
    pooled: float
    per_prototype: Tensor
    pairs: Tensor
    noise_std: float
    noise_clip: float
    noise_space: str
    seed: int
    half_size: int
    keypoints: str
    view: str

    @property
    def prototype_mean(self) -> float:
        """The per-prototype mean: ``score`` (kept for code written when ``score`` was the pooled figure)."""
        return self.score

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: score, options and the per-prototype stable fraction."""
        return jsonable(
            {
                "score": self.score,
                "pooled": self.pooled,
                "noise_std": self.noise_std,
                "noise_clip": self.noise_clip,
                "noise_space": self.noise_space,
                "seed": self.seed,
                "half_size": self.half_size,
                "keypoints": self.keypoints,
                "view": self.view,
                "per_prototype": self.per_prototype,
                "pairs": self.pairs.long(),
            }
        )


def gaussian_noise(
    *,
    std: float = 0.2,
    clip: float = 0.25,
    space: str = "normalized",
    seed: int = 0,
    mean_std: tuple[Tensor, Tensor] | None = None,
) -> Callable[[Tensor], Tensor]:
    """A perturbation adding clipped Gaussian noise to batches of normalised images.

    Noise is drawn on the CPU from one generator seeded with ``seed``, a (B, C, H, W) draw per
    call, so results are reproducible for a fixed dataset order and batch size on any device.

    Args:
        std: Std of the noise N(0, std^2).
        clip: The noise is clipped to [-clip, clip].
        space: ``"normalized"`` adds it to the normalised input (the paper); ``"pixel"`` adds it
            to the de-normalised [0, 1] image, clamps that to [0, 1] and normalises again.
        seed: Seed of the generator.
        mean_std: (C,) normalisation mean and std, needed for ``space="pixel"``.

    Returns:
        ``perturb(x) -> x + noise``.
    """
    if space not in NOISE_SPACES:
        raise ValueError(f"noise space must be one of {NOISE_SPACES}, got {space!r}")
    if space == "pixel" and mean_std is None:
        raise ValueError("noise in pixel space needs the normalisation mean and std (mean_std=...)")
    generator = torch.Generator().manual_seed(seed)

    def perturb(x: Tensor) -> Tensor:
        noise = (
            torch.randn(x.shape, generator=generator).mul_(std).clamp_(-clip, clip)
        )  # in place: one (B, C, H, W) buffer
        noise = noise.to(x.device, x.dtype)
        if space == "normalized":
            return noise.add_(x)  # x + noise
        mean, scale = (t.to(x.device, x.dtype)[:, None, None] for t in mean_std)  # (C, 1, 1)
        return ((x * scale + mean + noise).clamp(0, 1) - mean) / scale

    return perturb


def _model_noise(model: nn.Module, std: float, clip: float, space: str, seed: int) -> Callable[[Tensor], Tensor]:
    check_range("noise_std", std, 0.0, math.inf, low_open=True, high_open=True, meaning="the std of the Gaussian noise")
    check_range(
        "noise_clip", clip, 0.0, math.inf, low_open=True, meaning="the noise is clipped to [-noise_clip, noise_clip]"
    )
    mean_std = None
    if space == "pixel":
        config = resolve_data_config(model)
        mean_std = (torch.tensor(config["mean"]), torch.tensor(config["std"]))
    return gaussian_noise(std=std, clip=clip, space=space, seed=seed, mean_std=mean_std)


def stability_from_counts(
    counts: PartCounts, *, noise_std: float, noise_clip: float, noise_space: str, seed: int, view: str = "image"
) -> StabilityResult:
    """Turns the counts of :func:`~protozoo.evaluate._parts.scan_parts` into a :class:`StabilityResult`."""
    per_prototype = torch.where(counts.pairs > 0, counts.stable / counts.pairs.clamp_min(1), torch.nan)  # (P,)
    total = counts.pairs.sum().item()
    pooled = 100.0 * counts.stable.sum().item() / total if total else float("nan")
    return StabilityResult(
        score=100.0 * per_prototype.nanmean().item(),  # the paper's code: the mean over prototypes
        pooled=pooled,
        per_prototype=per_prototype.cpu(),
        pairs=counts.pairs.cpu(),
        noise_std=noise_std,
        noise_clip=noise_clip,
        noise_space=noise_space,
        seed=seed,
        half_size=counts.half_size,
        keypoints=counts.keypoints,
        view=view,
    )


def consistency_and_stability(
    model: nn.Module,
    dataset: Dataset,
    *,
    mu: float = DEFAULT_MU,
    half_size: int | None = None,
    keypoints: str = "float",
    noise_std: float = 0.2,
    noise_clip: float = 0.25,
    noise_space: str = "normalized",
    seed: int = 0,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    view: str | None = None,
    num_workers: int = 0,
) -> tuple[ConsistencyResult, StabilityResult]:
    """Consistency and stability in one pass (two forwards per batch instead of three).

    The options are those of :func:`~protozoo.evaluate.consistency` and :func:`stability`.
    """
    check_mu(mu)
    perturb = _model_noise(model, noise_std, noise_clip, noise_space, seed)
    counts = scan_parts(
        model,
        dataset,
        perturb=perturb,
        half_size=half_size,
        keypoints=keypoints,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
    )
    view = pick_view(list(counts), view)
    noise = {"noise_std": noise_std, "noise_clip": noise_clip, "noise_space": noise_space, "seed": seed}
    return (
        consistency_from_counts(counts[view], mu=mu, view=view),
        stability_from_counts(counts[view], view=view, **noise),
    )


def stability(
    model: nn.Module,
    dataset: Dataset,
    *,
    half_size: int | None = None,
    keypoints: str = "float",
    noise_std: float = 0.2,
    noise_clip: float = 0.25,
    noise_space: str = "normalized",
    seed: int = 0,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    view: str | None = None,
    num_workers: int = 0,
) -> StabilityResult:
    """Part stability score of a prototype model (Huang et al., ICCV 2023).

    For every image and every prototype of the image's class, the visible parts inside the box
    around the upsampled map's peak (as in :func:`~protozoo.evaluate.consistency`) are found on
    the image and on a noisy copy; the pair is stable when the two parts-inside vectors (over
    the visible parts) are equal.

    Args:
        model: A prototype model (see :func:`~protozoo.evaluate._parts.prototype_maps`).
        dataset: Items with ``image`` (normalised), ``label``, ``parts`` and ``parts_visible``.
        half_size: Box half side in pixels; None uses ``round(36 * H / 224)``.
        keypoints: ``"float"`` or ``"truncate"`` (the reference code's integer keypoints; see
            :func:`~protozoo.evaluate.consistency`).
        noise_std: Std of the Gaussian noise (0.2 in the paper).
        noise_clip: Noise clipped to [-noise_clip, noise_clip] (0.25 in the paper).
        noise_space: ``"normalized"`` (the paper: added to the normalised input) or ``"pixel"``
            (added to the [0, 1] image, which is clamped to [0, 1]; mean and std from the
            model's ``pretrained_cfg``).
        seed: Seed of the noise (see :func:`gaussian_noise`; fixed batch size -> same noise).
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.
        view: Which view to score for multi-view models; None for single-view models.
        num_workers: DataLoader worker processes loading the items (0: in this process).

    Returns:
        A :class:`StabilityResult`; ``score`` (0-100) is the paper's: the mean over prototypes of
        each one's stable share (``pooled`` weighs the prototypes by their classes' sizes).
    """
    perturb = _model_noise(model, noise_std, noise_clip, noise_space, seed)
    counts = scan_parts(
        model,
        dataset,
        perturb=perturb,
        half_size=half_size,
        keypoints=keypoints,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
    )
    view = pick_view(list(counts), view)
    return stability_from_counts(
        counts[view], noise_std=noise_std, noise_clip=noise_clip, noise_space=noise_space, seed=seed, view=view
    )
