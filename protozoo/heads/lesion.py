"""The lesion-linked head: lesion prototypes -> lesion logits -> a diagnosis from the lesions alone.

features (B, C, H, W) -> ProtoPNet head with the L lesion types as its classes -> similarities
(B, P) -> bias-free last layer + per-lesion bias -> lesion logits (B, L) -> sigmoid -> non-negative
linear layer -> diagnosis logits (B, K). The healthy class takes no lesion evidence (its weights are
zero), so a found lesion can only raise a disease logit: the diagnosis is monotone in the lesions.
See docs/heads.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import reduce
from torch import Tensor, nn

from protozoo.heads.protopnet import ProtoPNetHead
from protozoo.outputs import LesionOutput


class NonNegativeLinear(nn.Module):
    """``y = x (softplus(V) * keep)^T + b``: every input can only add evidence to an output.

    Args:
        in_features: Inputs (lesion probabilities).
        out_features: Outputs (diagnosis classes).
        evidence_free: Outputs that take no input at all (their weights are fixed at 0, only their
            bias is learnt): the healthy class of a diagnosis.
    """

    def __init__(self, in_features: int, out_features: int, evidence_free: tuple[int, ...] = ()):
        super().__init__()
        self.raw_weight = nn.Parameter(torch.zeros(out_features, in_features))  # softplus(0) = log 2
        self.bias = nn.Parameter(torch.zeros(out_features))
        keep = torch.ones(out_features, 1)
        keep[list(evidence_free)] = 0
        self.register_buffer("keep", keep, persistent=False)  # (out, 1): 0 for evidence-free outputs

    @property
    def weight(self) -> Tensor:
        """(out, in) non-negative weights; rows of evidence-free outputs are 0."""
        return F.softplus(self.raw_weight) * self.keep

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class LesionHead(ProtoPNetHead):
    """A :class:`ProtoPNetHead` whose classes are lesion types, plus lesion biases and a diagnosis layer.

    Args:
        num_lesions: L, the head's prototype classes.
        num_classes: K diagnosis classes.
        lesion_prior: Initial probability of every lesion: the lesion biases start at its logit
            (as detection heads initialise their classifiers), so that a lesion reads "absent" until
            its prototypes find it. Far prototypes add ~0 similarity, near ones up to ~9.
        healthy_class: The diagnosis class that no lesion is evidence for (non-AMD), or None for
            a diagnosis in which every class may take lesion evidence.
        **kwargs: :class:`ProtoPNetHead` arguments (``prototypes_per_class`` = prototypes per lesion).
    """

    def __init__(
        self, *, num_lesions: int, num_classes: int, lesion_prior: float = 0.1, healthy_class: int | None = 0, **kwargs
    ):
        super().__init__(num_classes=num_lesions, **kwargs)
        if not 0 < lesion_prior < 1:
            raise ValueError(f"lesion_prior must lie strictly between 0 and 1, got {lesion_prior}")
        if healthy_class is not None and not 0 <= healthy_class < num_classes:
            raise ValueError(
                f"healthy_class must be a diagnosis class index in [0, {num_classes}) or None, got {healthy_class}"
            )
        prior_logit = math.log(lesion_prior / (1 - lesion_prior))
        self.lesion_bias = nn.Parameter(torch.full((num_lesions,), prior_logit))  # (L,)
        self.healthy_class = healthy_class
        free = () if healthy_class is None else (healthy_class,)
        self.diagnosis = NonNegativeLinear(num_lesions, num_classes, evidence_free=free)

    def diagnose(self, lesion_logits: Tensor) -> Tensor:
        """(B, L) lesion logits -> (B, K) diagnosis logits; the diagnosis reads nothing else."""
        return self.diagnosis(lesion_logits.sigmoid())

    def lesion_similarity_maps(self, distance_maps: Tensor) -> Tensor:
        """(B, P, H, W) distances -> (B, L, H, W): per lesion, the max of its prototypes' similarity maps."""
        return reduce(self.activation(distance_maps), "b (l m) h w -> b l h w", "max", l=self.num_classes)

    def forward(self, features: Tensor, cells: Tensor | None = None) -> LesionOutput:
        proto = super().forward(features, cells)  # proto.logits: the bias-free last layer over the lesion prototypes
        lesion_logits = proto.logits + self.lesion_bias  # (B, L)
        return LesionOutput(
            logits=self.diagnose(lesion_logits),
            similarities=proto.similarities,
            min_distances=proto.min_distances,
            distance_maps=proto.distance_maps,
            lesion_logits=lesion_logits,
        )
