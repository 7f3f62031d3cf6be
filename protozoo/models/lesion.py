"""Lesion-linked ProtoPNet for AMD: prototypes of lesion types, a diagnosis explained by the lesions.

After Morano et al. 2023 (weakly supervised, explainable detection of AMD-related lesions in colour
fundus images). The prototype classes are the lesion types (``prototype_class`` is the lesion
index, so push treats lesions as classes); lesion logits are trained with image-level multi-hot
labels, and the diagnosis is a non-negative linear function of the lesion probabilities only, in
which the healthy class (non-AMD) takes no lesion evidence: a found lesion can only raise AMD.
``lesion_maps`` turns the lesion prototypes' similarity maps into coarse lesion segmentations.
Rules and equations: docs/heads.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from einops import reduce
from torch import Tensor

from protozoo.family import Family, register_family
from protozoo.heads.lesion import LesionHead
from protozoo.lesions import FUNDUS_LESIONS
from protozoo.models.protopnet import ProtoPNet, ProtoPNetConfig
from protozoo.resample import upsample_bicubic

__all__ = ["LesionConfig", "LesionProtoPNet"]

PAPER = (
    "ProtoPNet with lesion prototypes and a lesion-only diagnosis, after Morano et al. 2023 "
    "(weakly supervised, explainable detection of AMD-related lesions in colour fundus images)"
)
DEFAULT_LESIONS = list(FUNDUS_LESIONS)  # the lesion vocabulary of protozoo.lesions
MAP_EPSILON = 1e-12


@dataclass
class LesionConfig(ProtoPNetConfig):
    """ProtoPNet's arguments with lesion types as the prototype classes.

    ``prototypes_per_class`` is the number of prototypes per lesion (P = prototypes_per_class * L);
    ``num_classes`` is K, the diagnosis classes (non-AMD / AMD).

    Attributes:
        lesion_names: The L lesion types, in the order of the multi-hot lesion labels.
        incorrect_class_connection: Initial last-layer weight from a prototype to the other
            lesions' logits; 0 because lesions co-occur (a drusen prototype is no evidence against
            atrophy).
        add_on_norm: On by default here: a lesion is a few latent patches, and a saturated add-on
            sigmoid leaves the backbone too little gradient to learn them (see ``make_add_on``).
        lesion_prior: Initial probability of each lesion (the lesion biases start at its logit).
        healthy_class: The diagnosis class no lesion is evidence for (0, non-AMD); None lets every
            class take lesion evidence (a diagnosis that is then not monotone in the lesions).
    """

    arch: str = "protopnet_lesion"
    num_classes: int = 2
    in_chans: int = 3
    incorrect_class_connection: float = 0.0
    add_on_norm: bool = True
    lesion_prior: float = 0.1
    healthy_class: int | None = 0
    lesion_names: list[str] = field(default_factory=lambda: list(DEFAULT_LESIONS))


class LesionProtoPNet(ProtoPNet):
    """A timm backbone feeding a :class:`~protozoo.heads.lesion.LesionHead`; ``model(x)`` (ProtoPNet's
    forward) returns the head's :class:`~protozoo.outputs.LesionOutput`."""

    config_class = LesionConfig
    class_dependent = ("head.diagnosis.raw_weight", "head.diagnosis.bias")

    def __init__(self, config: LesionConfig):
        names = list(config.lesion_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"lesion_names must be a non-empty list of distinct names, got {names}")
        super().__init__(config)

    def build_head(self, config: LesionConfig) -> LesionHead:
        """ProtoPNet's head with the lesion types as its prototype classes, plus the diagnosis layer."""
        return LesionHead(
            num_lesions=len(config.lesion_names),
            num_classes=config.num_classes,
            lesion_prior=config.lesion_prior,
            healthy_class=config.healthy_class,
            **self.head_arguments(config),
        )

    @property
    def lesion_names(self) -> list[str]:
        return list(self.config.lesion_names)

    @property
    def num_lesions(self) -> int:
        return len(self.config.lesion_names)

    @property
    def prototypes_per_lesion(self) -> int:
        return self.config.prototypes_per_class

    def lesion_maps(self, x: Tensor) -> Tensor:
        """(B, C, H_in, W_in) images -> (B, L, H_in, W_in) coarse lesion maps in [0, 1].

        Per lesion, the max over its prototypes' similarity maps, upsampled bicubically to the
        input size, then min-max normalised per image over all its lesion maps together (so the
        maps of one image stay comparable; a constant image map becomes 0).
        """
        maps = self.head.lesion_similarity_maps(self.distance_maps(x))  # (B, L, H, W)
        maps = upsample_bicubic(maps, tuple(x.shape[-2:]))  # (B, L, H_in, W_in)
        low = reduce(maps, "b l h w -> b 1 1 1", "min")
        high = reduce(maps, "b l h w -> b 1 1 1", "max")
        return (maps - low) / (high - low).clamp_min(MAP_EPSILON)

    def parameter_groups(self) -> dict[str, list]:
        """ProtoPNet's groups, with the lesion last layer, the lesion biases and the diagnosis layer
        as the ``readout`` group, which trains in every phase.

        Unlike a ProtoPNet class layer (fixed at +1 / -0.5 until its own phase), the lesion layer is
        a bank of detectors: a lesion's logit must be calibrated against its base rate and its
        prototypes' similarity scale while the prototypes learn, or every lesion reads "present".
        """
        groups = super().parameter_groups()
        groups["readout"] = [*groups.pop("last_layer"), self.head.lesion_bias, *self.head.diagnosis.parameters()]
        groups["last_layer"] = []
        return groups


def lesion_labels(batch: dict[str, Any]) -> Tensor:
    """(B, L) multi-hot: the lesions present, the prototype classes of a lesion head."""
    return torch.as_tensor(batch["lesions"])


def lesions_found(model: LesionProtoPNet, batch: dict[str, Any]) -> Tensor:
    """(B, L) bool: the lesions the model finds (lesion logit > 0)."""
    return model(batch["image"]).lesion_logits > 0


def lesion_dataset_arguments(dataset: Any) -> dict[str, Any]:
    """The diagnosis classes and the dataset's lesion names (protozoo.lesions)."""
    names = getattr(dataset, "lesion_names", None)
    if not names:
        raise ValueError(
            f"{type(dataset).__name__} has no lesion_names: the lesion head trains on data with lesion "
            "labels (items with 'lesions', e.g. synthetic-fundus or amd:PATH with Lesion_Masks/)"
        )
    return {"num_classes": len(dataset.classes), "lesion_names": list(names)}


register_family(
    Family(
        example_data="synthetic-fundus",
        name="protopnet_lesion",
        model_class=LesionProtoPNet,
        title="lesion-linked ProtoPNet (AMD)",
        paper=PAPER,
        prototype_kind="lesion",
        requires=("image", "label", "lesions"),
        prototype_classes=lambda model: model.lesion_names,
        labels=lesion_labels,
        predicted=lesions_found,
        dataset_arguments=lesion_dataset_arguments,
        loss="protozoo.train.losses_lesion:lesion_loss",
        explainer="protozoo.explanation:explain_lesion",
        panel="protozoo.viz.lesions:render_lesion_panel",
        # Separation per (image, absent lesion) pair, bounded (latents lie in [0, 1]^D), so it is
        # weighted like the cluster cost: it keeps background-matching prototypes away.
        # Patches only from the fundus disc (never the black surround). Where the data has lesion
        # masks (synthetic-fundus; ignored otherwise): each lesion's prototypes pushed from and pulled
        # to that lesion's own cells, and IAIA-BL's fine-annotation loss (the zoo model's recipe).
        recipe={
            "loss": {"separation": -0.8, "lesion_pooling": True, "fine_annotation": 1.0},
            "push_foreground": True,
            "push_lesions": True,
        },
    )
)
