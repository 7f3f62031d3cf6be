"""Distances between latent patches and prototypes, and the activations that turn them into similarities.

Pure functions. Distance maps are (B, P, H, W): one distance per prototype per latent patch.
Higher similarity always means more alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_EPSILON = 1e-4  # Chen et al. 2019, the epsilon of log((d + 1) / (d + eps))


def squared_l2_maps(z: Tensor, prototypes: Tensor) -> Tensor:
    """Squared L2 distance from every latent patch to every prototype, by the expansion trick.

    ``||z - p||^2 = ||z||^2 - 2 z.p + ||p||^2``, clamped at 0 against round-off, as in ProtoPNet.
    The cross term is one 1x1 convolution, so the cost is a matmul rather than P separate maps.

    Args:
        z: Latent feature map, (B, D, H, W).
        prototypes: (P, D).

    Returns:
        (B, P, H, W) squared distances.
    """
    z2 = z.pow(2).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    zp = F.conv2d(z, prototypes[:, :, None, None])  # (B, P, H, W)
    p2 = prototypes.pow(2).sum(dim=1)[None, :, None, None]  # (1, P, 1, 1)
    return (z2 - 2 * zp + p2).clamp_min(0)


def cosine_distance_maps(z: Tensor, prototypes: Tensor) -> Tensor:
    """``1 - cos(z, p)`` for every latent patch and prototype: (B, D, H, W), (P, D) -> (B, P, H, W)."""
    z_unit = F.normalize(z, dim=1)
    p_unit = F.normalize(prototypes, dim=1)
    return 1 - F.conv2d(z_unit, p_unit[:, :, None, None])


def log_similarity(d: Tensor) -> Tensor:
    """ProtoPNet's activation ``log((d + 1) / (d + 1e-4))``: large when d is near 0, ~0 when far."""
    return torch.log((d + 1) / (d + LOG_EPSILON))


def linear_similarity(d: Tensor) -> Tensor:
    """``-d``."""
    return -d


def make_exp_similarity(temperature: float) -> Callable[[Tensor], Tensor]:
    """``exp(-d / T)``."""

    def exp_similarity(d: Tensor) -> Tensor:
        return torch.exp(-d / temperature)

    return exp_similarity


def cosine_similarity(d: Tensor) -> Tensor:
    """Inverse of :func:`cosine_distance_maps`: ``1 - d = cos(z, p)``."""
    return 1 - d


SIMILARITIES = ("log", "linear", "exp", "cosine")


def make_similarity(name: str, *, temperature: float = 1.0) -> tuple[Callable, Callable]:
    """The (distance function, activation) pair of a similarity name.

    Returns:
        ``distance(z, prototypes) -> (B, P, H, W)`` and ``activation(d) -> similarity``; the
        activation is monotonically decreasing in d, so the max-pooled similarity is the
        activation of the min-pooled distance.
    """
    if name == "log":
        return squared_l2_maps, log_similarity
    if name == "linear":
        return squared_l2_maps, linear_similarity
    if name == "exp":
        return squared_l2_maps, make_exp_similarity(temperature)
    if name == "cosine":
        return cosine_distance_maps, cosine_similarity
    raise ValueError(f"unknown similarity {name!r}; choose one of {', '.join(SIMILARITIES)}")
