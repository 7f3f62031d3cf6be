"""Lesion-linked ProtoPNet for AMD: prototypes of lesion types, a diagnosis explained by the lesions.

After Morano et al. 2023 (weakly supervised, explainable detection of AMD-related lesions in colour
fundus images). The prototype classes are the lesion types (``prototype_class`` is the lesion
index, so push treats lesions as classes); lesion logits are trained with image-level multi-hot
labels, and the diagnosis is a non-negative linear function of the lesion probabilities only.
``lesion_maps`` turns the lesion prototypes' similarity maps into coarse lesion segmentations.
Rules and equations: docs/heads.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch.nn.functional as F
from einops import reduce
from torch import Tensor

from protozoo.heads.lesion import LesionHead
from protozoo.models.protopnet import BACKBONES, ProtoPNet, ProtoPNetConfig
from protozoo.outputs import LesionOutput
from protozoo.pretrained import PretrainedCfg
from protozoo.registry import register_model

__all__ = ["LesionConfig", "LesionProtoPNet"]

PAPER = ("ProtoPNet with lesion prototypes and a lesion-only diagnosis, after Morano et al. 2023 "
         "(weakly supervised, explainable detection of AMD-related lesions in colour fundus images)")
# The lesion types of synthetic-fundus (protozoo.data.synthetic.FUNDUS_LESIONS), copied so that
# building a model does not import the datasets.
DEFAULT_LESIONS = ["drusen", "haemorrhage", "hard_exudate", "geographic_atrophy", "neovascular_scar"]
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
    """

    arch: str = "protopnet_lesion"
    num_classes: int = 2
    in_chans: int = 3
    incorrect_class_connection: float = 0.0
    add_on_norm: bool = True
    lesion_prior: float = 0.1
    lesion_names: list[str] = field(default_factory=lambda: list(DEFAULT_LESIONS))


class LesionProtoPNet(ProtoPNet):
    """A timm backbone feeding a :class:`~protozoo.heads.lesion.LesionHead`."""

    config_class = LesionConfig
    class_dependent = ("head.diagnosis.raw_weight", "head.diagnosis.bias")

    def __init__(self, config: LesionConfig):
        names = list(config.lesion_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"lesion_names must be a non-empty list of distinct names, got {names}")
        super().__init__(config)

    def build_head(self, config: LesionConfig) -> LesionHead:
        """ProtoPNet's head with the lesion types as its prototype classes, plus the diagnosis layer."""
        return LesionHead(num_lesions=len(config.lesion_names), num_classes=config.num_classes,
                          lesion_prior=config.lesion_prior, **self.head_arguments(config))

    @property
    def lesion_names(self) -> list[str]:
        return list(self.config.lesion_names)

    @property
    def num_lesions(self) -> int:
        return len(self.config.lesion_names)

    @property
    def prototypes_per_lesion(self) -> int:
        return self.config.prototypes_per_class

    def forward(self, x: Tensor) -> LesionOutput:
        self.check_input(x)
        return self.head(self.backbone(x))

    def lesion_maps(self, x: Tensor) -> Tensor:
        """(B, C, H_in, W_in) images -> (B, L, H_in, W_in) coarse lesion maps in [0, 1].

        Per lesion, the max over its prototypes' similarity maps, upsampled bicubically to the
        input size, then min-max normalised per image over all its lesion maps together (so the
        maps of one image stay comparable; a constant image map becomes 0).
        """
        maps = self.head.lesion_similarity_maps(self.distance_maps(x))  # (B, L, H, W)
        maps = F.interpolate(maps, size=x.shape[-2:], mode="bicubic", align_corners=False)  # (B, L, H_in, W_in)
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


def _make_entrypoint(suffix: str, timm_name: str, default_cfg: PretrainedCfg) -> None:
    arch = f"protopnet_lesion_{suffix}"

    def entrypoint(**overrides: Any) -> LesionProtoPNet:
        return LesionProtoPNet(replace(LesionConfig(arch=arch, backbone=timm_name), **overrides))

    entrypoint.__name__ = entrypoint.__qualname__ = arch
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"Lesion-linked ProtoPNet on timm ``{timm_name}``. Keyword arguments override :class:`LesionConfig`."
    register_model(entrypoint, default_cfg=default_cfg.replace(paper=PAPER))
    globals()[arch] = entrypoint


for _suffix, (_timm_name, _cfg) in BACKBONES.items():
    _make_entrypoint(_suffix, _timm_name, _cfg)
