"""BRAIxProtoPNet++ (Wang et al., MICCAI 2022): a global CNN branch distilled into a prototype branch.

One shared backbone feeds a global branch (pooled features, linear classifier) and a ProtoPNet
head. The prediction averages the two branches' probabilities; both are returned too. Training
(``protozoo.train``): the global branch alone, then the prototype branch, then jointly, with a
distillation hinge from the global to the prototype branch, and pushes that never reuse a source
image within a class.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from protozoo.family import Family, register_family
from protozoo.models.protopnet import ProtoPNet, ProtoPNetConfig
from protozoo.outputs import BRAIxOutput
from protozoo.registry import register_alias

__all__ = ["BRAIxConfig", "BRAIxProtoPNet"]

PAPER = (
    "Wang et al., Knowledge Distillation to Ensemble Global and Interpretable Prototype-Based "
    "Mammogram Classification Models, MICCAI 2022"
)


@dataclass
class BRAIxConfig(ProtoPNetConfig):
    """ProtoPNet's arguments plus the global branch's dropout.

    Defaults are for screening mammograms: one channel, two classes (no cancer / cancer) as in the
    paper; ``num_classes`` and ``in_chans`` are ordinary overrides.
    """

    arch: str = "braix_protopnet_pp"
    num_classes: int = 2
    in_chans: int = 1
    global_dropout: float = 0.0


class BRAIxProtoPNet(ProtoPNet):
    """A shared timm backbone, a global classifier and a ProtoPNet head, predicted as an ensemble."""

    config_class = BRAIxConfig
    class_dependent = ProtoPNet.class_dependent + ("global_head.fc.weight", "global_head.fc.bias")

    def __init__(self, config: BRAIxConfig):
        super().__init__(config)
        self.global_head = nn.Sequential()
        self.global_head.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.global_head.add_module("flatten", nn.Flatten())
        self.global_head.add_module("drop", nn.Dropout(config.global_dropout))
        self.global_head.add_module("fc", nn.Linear(self.backbone.out_channels, config.num_classes))

    def forward(self, x: Tensor) -> BRAIxOutput:
        x = self.check_input(x)
        features = self.backbone(x)  # (B, C, H, W)
        proto = self.head(features, self.foreground_cells(x, features.shape))
        global_logits = self.global_head(features)  # (B, K)
        probabilities = (global_logits.softmax(dim=1) + proto.logits.softmax(dim=1)) / 2
        return BRAIxOutput(
            logits=probabilities.clamp_min(1e-12).log(),
            similarities=proto.similarities,
            min_distances=proto.min_distances,
            distance_maps=proto.distance_maps,
            global_logits=global_logits,
            prototype_logits=proto.logits,
            probabilities=probabilities,
        )

    def parameter_groups(self) -> dict[str, list]:
        return super().parameter_groups() | {"global_head": list(self.global_head.parameters())}


def global_branch_logits(model: BRAIxProtoPNet, x: Tensor, view: str = "image") -> Tensor:
    """(B, K) logits of the global CNN branch alone (what post-hoc saliency of the global model explains)."""
    return model(x).global_logits


register_family(
    Family(
        example_data="synthetic-mammo",
        name="braix_protopnet_pp",
        model_class=BRAIxProtoPNet,
        title="BRAIxProtoPNet++ (Wang et al. 2022)",
        paper=PAPER,
        loss="protozoo.train.losses_medical:braix_loss",
        explainer="protozoo.explanation:explain_braix",
        # The global branch alone, then prototypes, then jointly; no source image reused within a class.
        # Patches only from the breast (from the masses where the data has masks); IAIA-BL's
        # fine-annotation loss where the data has lesion masks (items without a mask are not penalised).
        recipe={
            "global_epochs": 5,
            "unique_source": "per_class",
            "push_foreground": True,
            "push_lesions": True,
            "loss": {"fine_annotation": 1.0, "foreground_pooling": True, "lesion_pooling": True},
        },
        # Grad-CAM of the global CNN branch is the paper's post-hoc comparison; the ensemble too.
        saliency_branches={
            "global": "protozoo.models.braix:global_branch_logits",
            "ensemble": "protozoo.evaluate.posthoc:image_logits",
        },
    )
)

# The default model: EfficientNet-Lite0 (real ImageNet weights offline), one-channel mammograms,
# normal / benign / malignant.
register_alias("braix-protopnet++", "braix_protopnet_pp_efficientnet_lite0")
