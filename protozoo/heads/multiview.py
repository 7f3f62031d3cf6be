"""Cross-view layers of the multi-view (CC/MLO) mammography head.

The prototypes, add-on layers and view-max last layer are a :class:`ProtoPNetHead`'s; this module
adds what links the two views of a breast:

- local co-occurrence: cross-attention ``A_{a<-b} = softmax_j(q_a[i] . k_b[j] / sqrt(d))`` between
  the two views' feature maps, the co-occurrence map ``C_a[p, i] = sum_j A[i, j] S+_b[p, j]`` and
  the score ``max_i (sqrt(S+_a[p, i] C_a[p, i] + eps) - sqrt(eps))``;
- global consistency: a SimSiam projector g and predictor h on the views' pooled features;
- the co-occurrence block of the last layer, (K, P), bias-free.

See docs/heads.md for the rules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn

GEOMETRIC_EPSILON = 1e-6  # keeps the gradient of sqrt finite where a similarity is 0


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear-LayerNorm-ReLU-Linear: SimSiam's MLPs with LayerNorm for BatchNorm (batches of a few
    breasts, or fewer where views are missing); the norm keeps about half the hidden units alive."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim)
    )


def geometric_mean(a: Tensor, b: Tensor, eps: float = GEOMETRIC_EPSILON) -> Tensor:
    """``sqrt(a b + eps) - sqrt(eps)`` of non-negative tensors: 0 when either is 0, smooth everywhere."""
    return (a * b + eps).sqrt() - math.sqrt(eps)


def cooccurrence_maps(attention: Tensor, other_similarity_maps: Tensor) -> Tensor:
    """Where, seen from one view, each prototype fires at the corresponding place of the other view.

    Args:
        attention: (B, N, M) rows over the other view's M locations, summing to 1.
        other_similarity_maps: (B, P, M) non-negative similarity maps of the other view.

    Returns:
        (B, P, N) ``C[p, i] = sum_j A[i, j] S[p, j]``.
    """
    return torch.einsum("bij,bpj->bpi", attention, other_similarity_maps)


def cooccurrence_scores(similarity_maps: Tensor, cooccurrence: Tensor) -> Tensor:
    """(B, P, N) own-view maps and co-occurrence maps -> (B, P) ``max_i geometric_mean(S[p, i], C[p, i])``."""
    return reduce(geometric_mean(similarity_maps, cooccurrence), "b p n -> b p", "max")


def simsiam_loss(p_a: Tensor, z_a: Tensor, p_b: Tensor, z_b: Tensor) -> Tensor:
    """``1 - (cos(p_a, sg(z_b)) + cos(p_b, sg(z_a))) / 2``, averaged over the batch."""
    cos_ab = F.cosine_similarity(p_a, z_b.detach(), dim=1)  # (B,)
    cos_ba = F.cosine_similarity(p_b, z_a.detach(), dim=1)  # (B,)
    return 1 - (cos_ab + cos_ba).mean() / 2


class CrossViewHead(nn.Module):
    """Cross-attention, co-occurrence last-layer block and SimSiam consistency of two views.

    Args:
        in_channels: Channels C of the backbone feature maps.
        prototype_identity: (P, K) one-hot prototype classes (the ProtoPNet head's buffer).
        attention_dim: Depth of the learned 1x1 query and key projections (shared by both directions).
        projection_dim: Output depth of the projector g; the predictor h has a bottleneck of a quarter.
    """

    def __init__(
        self, *, in_channels: int, prototype_identity: Tensor, attention_dim: int = 64, projection_dim: int = 256
    ):
        super().__init__()
        num_prototypes, num_classes = prototype_identity.shape
        self.query = nn.Conv2d(in_channels, attention_dim, 1)
        self.key = nn.Conv2d(in_channels, attention_dim, 1)
        self.projector = _mlp(in_channels, projection_dim, projection_dim)
        self.predictor = _mlp(projection_dim, max(projection_dim // 4, 1), projection_dim)
        self.cooccurrence_layer = nn.Linear(num_prototypes, num_classes, bias=False)
        self.reset_cooccurrence_layer(prototype_identity)

    def reset_cooccurrence_layer(self, prototype_identity: Tensor) -> None:
        """1 from each prototype's co-occurrence score to its class, 0 to the others."""
        with torch.no_grad():
            self.cooccurrence_layer.weight.copy_(prototype_identity.T)

    def attention(self, features: Tensor, other_features: Tensor) -> Tensor:
        """(B, C, H, W) queries' and (B, C, H', W') keys' feature maps -> (B, H*W, H'*W'), rows sum to 1."""
        q = rearrange(self.query(features), "b d h w -> b (h w) d")
        k = rearrange(self.key(other_features), "b d h w -> b d (h w)")
        return (q @ k / math.sqrt(q.shape[-1])).softmax(dim=-1)

    def cooccurrence(
        self, features: Tensor, other_features: Tensor, similarity_maps: Tensor, other_similarity_maps: Tensor
    ) -> Tensor:
        """(B, P) co-occurrence scores of one direction (view <- other view).

        Args:
            features: (B, C, H, W) backbone features of the view.
            other_features: (B, C, H, W) of the other view.
            similarity_maps: (B, P, H, W) non-negative similarity maps of the view.
            other_similarity_maps: (B, P, H, W) of the other view.
        """
        attention = self.attention(features, other_features)  # (B, HW, HW)
        other = rearrange(other_similarity_maps, "b p h w -> b p (h w)")
        own = rearrange(similarity_maps, "b p h w -> b p (h w)")
        return cooccurrence_scores(own, cooccurrence_maps(attention, other))

    def consistency(self, features: Tensor, other_features: Tensor) -> Tensor:
        """SimSiam loss between the views' globally pooled (B, C, H, W) features."""
        z_a = self.projector(reduce(features, "b c h w -> b c", "mean"))
        z_b = self.projector(reduce(other_features, "b c h w -> b c", "mean"))
        return simsiam_loss(self.predictor(z_a), z_a, self.predictor(z_b), z_b)
