"""Is an input far from the training data? One documented rule, and the note pictures and reports carry.

The rule (docs/explain.md, "Out-of-distribution note"):

1. The statistic of an image is the Mahalanobis distance of its mean-pooled latent map (the space
   the prototypes live in, ``model.head.add_on``'s output, pooled over the H x W patches to one
   D-vector) to the training images' mean, under their covariance shrunk towards its average
   variance: ``s(x) = sqrt((z - mu)^T S^-1 (z - mu))``. A multi-view breast takes the larger of
   its views' distances.
2. :func:`calibrate` measures ``s`` over the training (push) images and records ``mu``, ``S^-1``
   and the quantiles of ``s`` in ``model.pretrained_cfg.extra["ood"]`` (saved with the model's
   ``config.json``).
3. An input is flagged *far from the training data* when ``s(x)`` exceeds the recorded 99th
   percentile (:data:`OOD_QUANTILE`): by construction about 1 in 100 training-like images is
   flagged too. Without recorded statistics the note says that nothing can be said.

Why not the distance to the prototypes (ProtoPNet's own min distance)? Measured on the BRAIx zoo
model, it does not separate: the 8 real CBIS-DDSM DICOMs and a random-noise image lie inside the
training images' min-distance range (a single patch near one prototype suffices), while their
pooled-latent Mahalanobis distance is 3-6 times the training images' 99th percentile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from protozoo.family import family_of

__all__ = ["OOD_KEY", "OOD_QUANTILE", "OODNote", "assess", "calibrate", "capture_latents", "distances", "no_statistics"]

OOD_KEY = "ood"  # model.pretrained_cfg.extra[OOD_KEY]
OOD_QUANTILE = 0.99  # flag above this quantile of the training images' statistic
RECORDED_QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)
SHRINKAGE = 0.05  # covariance shrunk this much towards (mean variance) * I, so S is invertible for few images
RULE = "pooled-latent Mahalanobis distance"


@dataclass
class OODNote:
    """Where one input stands against the training data.

    Attributes:
        statistic: ``s(x)`` (see the module docstring); None without recorded statistics.
        threshold: The recorded 99th percentile of ``s`` over the training images; None without.
        flagged: True where ``statistic > threshold``; None where nothing can be said.
        text: One line for a picture or a report.
    """

    statistic: float | None
    threshold: float | None
    flagged: bool | None
    text: str


def no_statistics() -> OODNote:
    """The note of a model without recorded statistics."""
    return OODNote(
        None,
        None,
        None,
        "out-of-distribution check: no training-data statistics recorded for this "
        "model, so nothing says whether this input is like its training data (record them with "
        "protozoo.ood.calibrate, or give protozoo explain --sources)",
    )


@contextlib.contextmanager
def capture_latents(model: Any) -> Iterator[list[Tensor]]:
    """Collect the latent maps (N, D, H, W) ``model.head.add_on`` gives during the forward passes run inside.

    A hook, so the explanation's one forward pass also yields the statistic (no second pass). A
    model without ``head.add_on`` captures nothing (its notes say that nothing can be said).
    """
    captured: list[Tensor] = []
    add_on = getattr(getattr(model, "head", None), "add_on", None)
    if add_on is None:
        yield captured
        return
    handle = add_on.register_forward_hook(lambda module, args, out: captured.append(out.detach()))
    try:
        yield captured
    finally:
        handle.remove()


def _pooled(latents: list[Tensor], items: int) -> Tensor:
    """The captured (V B, D, H, W) maps of one forward -> (B, V, D) pooled vectors (views concatenated)."""
    z = torch.cat(latents).double().mean(dim=(2, 3))  # (V B, D)
    return rearrange(z, "(v b) d -> b v d", b=items)


def distances(model: Any, latents: list[Tensor], items: int) -> Tensor | None:
    """(B,) statistic ``s`` of the ``items`` inputs of one forward pass whose latents were captured;
    None without recorded statistics."""
    stats = model.pretrained_cfg.extra.get(OOD_KEY)
    if not stats or not latents:
        return None
    mean = torch.tensor(stats["mean"], dtype=torch.float64)  # (D,)
    precision = torch.tensor(stats["precision"], dtype=torch.float64)  # (D, D)
    pooled = _pooled(latents, items)  # (B, V, D)
    if mean.shape != pooled.shape[-1:] or precision.shape != (len(mean), len(mean)):
        raise ValueError(
            f"pretrained_cfg.extra[{OOD_KEY!r}] holds statistics of {len(mean)}-dimensional latents, the "
            f"model's are {pooled.shape[-1]}-dimensional: re-record them with protozoo.ood.calibrate"
        )
    centred = pooled - mean  # (B, V, D)
    s = torch.einsum("bvd,de,bve->bv", centred, precision, centred).clamp_min(0).sqrt()  # (B, V)
    return s.amax(dim=1)


def assess(model: Any, latents: list[Tensor], items: int) -> list[OODNote]:
    """The note of each of the ``items`` inputs of one forward pass (see :func:`capture_latents`)."""
    s = distances(model, latents, items)
    if s is None:
        return [no_statistics() for _ in range(items)]
    stats = model.pretrained_cfg.extra[OOD_KEY]
    threshold = float(stats["quantiles"][str(OOD_QUANTILE)])
    top = float(stats["quantiles"]["1.0"])
    notes = []
    for value in s.tolist():
        flagged = value > threshold
        where = (
            f"above the 99th percentile {threshold:.2f} of the {stats['images']} training images (their max {top:.2f})"
            if flagged
            else f"within the training images' range (99th percentile {threshold:.2f})"
        )
        head = "OUT OF DISTRIBUTION: this input is far from the training data" if flagged else "in distribution"
        tail = "; do not trust the output" if flagged else ""
        notes.append(OODNote(value, threshold, flagged, f"{head}: {RULE} {value:.2f}, {where}{tail}"))
    return notes


def calibrate(
    model: Any, dataset: Any, *, batch_size: int = 32, max_items: int | None = 512, description: str | None = None
) -> dict[str, Any]:
    """Measure the statistic over training images and record it in ``model.pretrained_cfg.extra["ood"]``.

    Args:
        model: A protozoo model (its eval-mode forward is run; its mode is restored).
        dataset: Training (push) items, transformed as the model expects (the family's inputs).
        batch_size: Items per forward pass.
        max_items: Use at most the first this many items (None: all).
        description: What the data was, recorded beside the numbers (default: the dataset's class name).

    Returns:
        The recorded statistics: ``rule``, ``mean`` (D,), ``precision`` (D, D), ``quantiles``
        ``{"0.5": ..., "0.99": ..., "1.0": ...}``, ``images`` (how many) and ``data``.
    """
    from torch.utils.data import DataLoader, Subset

    from protozoo.data.collate import collate_items, to_device

    n = len(dataset) if max_items is None else min(len(dataset), max_items)
    if n < 2:
        raise ValueError(f"calibrate needs at least 2 training items to measure a spread, got {n}")
    family = family_of(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pooled = []
    try:
        loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size, shuffle=False, collate_fn=collate_items)
        with torch.no_grad(), capture_latents(model) as latents:
            for batch in loader:
                latents.clear()
                inputs = family.model_inputs(to_device(batch, device))
                model(*inputs)
                items = next(len(x) for x in inputs if isinstance(x, Tensor))
                pooled.append(_pooled(latents, items).cpu())  # (B, V, D)
    finally:
        model.train(was_training)
    z = rearrange(torch.cat(pooled), "b v d -> (b v) d")  # (N, D): every view an image of its own
    mean = z.mean(dim=0)
    cov = torch.cov(z.T).reshape(z.shape[1], z.shape[1])
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * cov.diagonal().mean().clamp_min(1e-12) * torch.eye(
        len(mean), dtype=cov.dtype
    )
    precision = torch.linalg.inv(cov)
    stats = {
        "rule": RULE,
        "mean": mean.tolist(),
        "precision": precision.tolist(),
        "images": int(n),
        "data": description or type(dataset).__name__,
    }
    model.pretrained_cfg = model.pretrained_cfg.replace(extra={**model.pretrained_cfg.extra, OOD_KEY: stats})
    s = distances(model, [z.view(*z.shape, 1, 1)], len(z))  # (N,) each pooled vector as a 1 x 1 latent map
    stats["quantiles"] = {str(q): float(torch.quantile(s, q)) for q in RECORDED_QUANTILES}
    return stats
