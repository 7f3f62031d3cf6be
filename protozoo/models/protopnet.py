"""ProtoPNet (Chen et al. 2019) on any timm backbone, and its registered entrypoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from protozoo.backbones import Backbone
from protozoo.family import Family, register_family
from protozoo.heads.protopnet import ProtoPNetHead
from protozoo.models._base import ProtoModel
from protozoo.outputs import ProtoOutput

__all__ = ["ProtoPNet", "ProtoPNetConfig"]

PAPER = "Chen et al., This Looks Like That: Deep Learning for Interpretable Image Recognition, NeurIPS 2019"


@dataclass
class ProtoPNetConfig:
    """Architecture arguments of a ProtoPNet (JSON-able: this is what ``config.json`` stores).

    Attributes:
        arch: Registered architecture name, so a saved model knows its entrypoint.
        backbone: Any timm model name.
        num_classes: K.
        prototypes_per_class: P = prototypes_per_class * K (10 in the paper).
        prototype_dim: Latent depth D of the prototypes (128 in the paper for most backbones).
        add_on: ``"bottleneck"`` (the paper's default) or ``"regular"``.
        add_on_norm: A BatchNorm on the backbone features before the add-on layers, for
            intermediate timm stages whose scale saturates the add-on's sigmoid (off: the paper).
        similarity: ``"log"`` (the paper), ``"linear"``, ``"exp"`` or ``"cosine"``.
        temperature: T of the ``exp`` similarity.
        incorrect_class_connection: Initial last-layer weight to other classes (-0.5).
        in_chans: Input channels (1 for mammograms and X-rays).
        feature_stage: Backbone stage (timm ``out_indices``); -1 is the deepest.
        backbone_kwargs: Extra ``timm.create_model`` arguments (``drop_path_rate``...).
        input_blur: Sigma (input pixels) of a Gaussian low-pass before the backbone (0: none, the
            paper). Pixel noise averages out before the first convolution: on the synthetic parts
            images, Huang et al.'s stability noise changes the stride-16 features by 60% of their
            norm without it and by 18% at sigma 1 (the same weights).
        foreground_only: Match the prototypes on the image's foreground cells only, in every
            forward (training, inference, explanations, push): the automatic rule of
            :mod:`protozoo.foreground` (Otsu's threshold, then the largest connected component, so
            the breast or the fundus disc and not a burned-in label or a bright corner). Cells off
            the foreground get each map's largest distance (its lowest similarity), so they never
            win the min-pool and the heat maps show them cold. Off: the paper.
    """

    arch: str = "protopnet"
    backbone: str = "resnet18"
    num_classes: int = 200
    prototypes_per_class: int = 10
    prototype_dim: int = 128
    add_on: str = "bottleneck"
    add_on_norm: bool = False
    similarity: str = "log"
    temperature: float = 1.0
    incorrect_class_connection: float = -0.5
    in_chans: int = 3
    feature_stage: int = -1
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    input_blur: float = 0.0
    foreground_only: bool = False


class ProtoPNet(ProtoModel):
    """A timm backbone feeding the ProtoPNet head.

    ``model(x)`` returns a :class:`~protozoo.outputs.ProtoOutput`; ``latent``, ``distance_maps``
    and ``similarity_maps`` expose the intermediate maps that push, evaluators and explanations use.
    """

    config_class = ProtoPNetConfig
    class_dependent = ("head.prototypes", "head.prototype_identity", "head.last_layer.weight")

    def __init__(self, config: ProtoPNetConfig):
        super().__init__(config)
        self.backbone = Backbone(
            config.backbone,
            in_chans=config.in_chans,
            stage=config.feature_stage,
            input_blur=config.input_blur,
            **config.backbone_kwargs,
        )
        self.head = self.build_head(config)

    def head_arguments(self, config: ProtoPNetConfig) -> dict[str, Any]:
        """The :class:`ProtoPNetHead` arguments every family shares (all but the classes)."""
        return dict(
            in_channels=self.backbone.out_channels,
            prototypes_per_class=config.prototypes_per_class,
            prototype_dim=config.prototype_dim,
            add_on=config.add_on,
            add_on_norm=config.add_on_norm,
            similarity=config.similarity,
            temperature=config.temperature,
            incorrect_class_connection=config.incorrect_class_connection,
        )

    def build_head(self, config: ProtoPNetConfig) -> ProtoPNetHead:
        """The prototype head on this backbone; families with another head override this."""
        return ProtoPNetHead(num_classes=config.num_classes, **self.head_arguments(config))

    @property
    def prototypes(self) -> Tensor:
        """(P, D) prototype vectors."""
        return self.head.prototypes

    @property
    def prototype_class(self) -> Tensor:
        """(P,) class of each prototype (contiguous blocks of ``prototypes_per_class``)."""
        return self.head.prototype_class

    @property
    def num_prototypes(self) -> int:
        return self.head.num_prototypes

    @property
    def last_layer(self):
        return self.head.last_layer

    def foreground_cells(self, x: Tensor, size: tuple[int, ...]) -> Tensor | None:
        """(B, h, w) bool latent cells the prototypes may match (``config.foreground_only``), else None."""
        if not self.config.foreground_only:
            return None
        from protozoo.foreground import automatic_foreground, foreground_cells

        return foreground_cells(automatic_foreground(x), tuple(size[-2:])).to(x.device)

    def latent(self, x: Tensor) -> Tensor:
        """(B, C_in, H_in, W_in) images -> (B, D, H, W) add-on output, the space prototypes live in."""
        x = self.check_input(x)
        return self.head.add_on(self.backbone(x))

    def distance_maps(self, x: Tensor) -> Tensor:
        """(B, P, H, W) distance of each prototype to each latent patch of the images."""
        z = self.latent(x)  # (B, D, H, W)
        return self.head.distance_maps(z, self.foreground_cells(x, z.shape))

    def similarity_maps(self, x: Tensor) -> Tensor:
        """(B, P, H, W) similarity of each prototype to each latent patch; higher = more alike."""
        return self.head.activation(self.distance_maps(x))

    def forward(self, x: Tensor) -> ProtoOutput:
        x = self.check_input(x)
        features = self.backbone(x)  # (B, C, H, W)
        return self.head(features, self.foreground_cells(x, features.shape))

    def parameter_groups(self) -> dict[str, list]:
        """Named parameter groups of the ProtoPNet schedule (warm, joint, last layer)."""
        return {
            "backbone": list(self.backbone.parameters()),
            "add_on": list(self.head.add_on.parameters()),
            "prototypes": [self.head.prototypes],
            "last_layer": list(self.head.last_layer.parameters()),
        }


register_family(Family(name="protopnet", model_class=ProtoPNet, title="ProtoPNet (Chen et al. 2019)", paper=PAPER))
