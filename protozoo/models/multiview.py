"""Multi-view ProtoPNet: the CC and MLO views of one breast, one breast-level prediction.

Both views go through one shared backbone and add-on; the prototypes are shared and stay
single-view latent patches (``latent``, ``distance_maps`` and ``similarity_maps`` read one view, so
push and the evaluators use them unchanged). The breast-level last layer reads the view-max
similarities and a cross-view co-occurrence score per prototype; a SimSiam loss keeps the views'
pooled features consistent. Missing views are masked (see :meth:`MultiViewProtoPNet.forward`).
Rules and equations: docs/heads.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange, reduce
from torch import Tensor

from protozoo.data.views import breast_views
from protozoo.family import Family, register_family
from protozoo.heads.multiview import CrossViewHead
from protozoo.models.protopnet import ProtoPNet, ProtoPNetConfig
from protozoo.outputs import MultiViewOutput

__all__ = ["VIEWS", "MultiViewConfig", "MultiViewProtoPNet"]

PAPER = (
    "ProtoPNet (Chen et al. 2019) over the CC and MLO views of a breast, after the MICCAI 2022 "
    "multi-view mammography prototype work: cross-view co-occurrence and global consistency"
)
VIEWS = ("cc", "mlo")
TWO_VIEW_CALL = "MultiViewProtoPNet reads two views of one breast: model(cc, mlo); pass None for a missing view"
_NOT_GIVEN: Any = object()  # sentinel: tells ``model(x)`` apart from ``model(x, None)``


@dataclass
class MultiViewConfig(ProtoPNetConfig):
    """ProtoPNet's arguments plus the cross-view layers' sizes.

    Defaults are for synthetic-mammo: one channel, normal / benign / malignant. ``similarity``
    must be non-negative somewhere (``log``, ``exp`` or ``cosine``): co-occurrence reads its
    positive part.

    Attributes:
        attention_dim: Depth of the cross-attention query/key projections.
        projection_dim: Output depth of the SimSiam projector (predictor bottleneck: a quarter).
    """

    arch: str = "protopnet_multiview"
    num_classes: int = 3
    in_chans: int = 1
    attention_dim: int = 64
    projection_dim: int = 256


class MultiViewProtoPNet(ProtoPNet):
    """A shared backbone and prototypes over two views, predicting once per breast."""

    config_class = MultiViewConfig
    class_dependent = ProtoPNet.class_dependent + ("cross_view.cooccurrence_layer.weight",)
    views = VIEWS

    def __init__(self, config: MultiViewConfig):
        if config.similarity == "linear":
            raise ValueError(
                "the multi-view head needs similarities that are positive when alike "
                "(co-occurrence is a geometric mean); use similarity='log', 'exp' or 'cosine'"
            )
        super().__init__(config)
        self.cross_view = CrossViewHead(
            in_channels=self.backbone.out_channels,
            prototype_identity=self.head.prototype_identity,
            attention_dim=config.attention_dim,
            projection_dim=config.projection_dim,
        )

    def forward(
        self, cc: Tensor | None = _NOT_GIVEN, mlo: Tensor | None = _NOT_GIVEN, *, present: Tensor | None = None
    ) -> MultiViewOutput:
        """Predict one breast from its two views.

        Missing-view rule: a view is missing for a breast when it is ``None`` (for the whole batch)
        or ``present[b, v]`` is False. A missing view is left out of the view-max similarities and
        view-min distances, its co-occurrence is 0 and the consistency loss skips the breast; its
        ``view_*`` entries are 0. A masked view's pixels are ignored (in training mode they still
        enter batch-norm statistics).

        Args:
            cc: (B, C, H, W) CC views, or None.
            mlo: (B, C, H, W) MLO views (same size as ``cc``), or None.
            present: Optional (B, 2) bool, which views each breast has (CC, MLO).

        Raises:
            ValueError: One tensor only (``model(x)``), no view for some breast, or views of
                different shapes.
        """
        if mlo is _NOT_GIVEN:
            raise ValueError(TWO_VIEW_CALL)
        cc, mlo = (None if x is None else self.check_input(x) for x in (cc, mlo))
        given = [x for x in (cc, mlo) if x is not None]
        if len(given) == 2 and cc.shape != mlo.shape:
            raise ValueError(
                f"the CC and MLO views must have one shape, got {tuple(cc.shape)} and "
                f"{tuple(mlo.shape)}; resize both views to one size"
            )
        present = self._views_present(cc, mlo, present)  # (B, 2)
        images = torch.cat(given)  # (V B, C, H, W)
        features = self.backbone(images)  # (V B, C, H, W)
        cells = self.foreground_cells(images, features.shape)  # (V B, H, W) or None
        distances = self.head.distance_maps(self.head.add_on(features), cells)  # (V B, P, H, W)
        distances = rearrange(distances, "(v b) p h w -> b v p h w", v=len(given))
        if len(given) == 1:
            distances = _place_single_view(distances, view=0 if cc is not None else 1)
        min_distances = reduce(distances, "b v p h w -> b v p", "min")
        similarities = self.head.activation(min_distances)  # (B, 2, P)
        absent = ~present[:, :, None]  # (B, 2, 1)
        breast_similarities = similarities.masked_fill(absent, float("-inf")).amax(dim=1)  # (B, P)
        breast_min_distances = min_distances.masked_fill(absent, float("inf")).amin(dim=1)  # (B, P)

        cooccurrence = breast_similarities.new_zeros(breast_similarities.shape)  # (B, P)
        consistency = None
        if len(given) == 2:
            both = present.all(dim=1)  # (B,)
            f_cc, f_mlo = rearrange(features, "(v b) c h w -> v b c h w", v=2)
            maps = self.head.activation(distances).clamp_min(0)  # (B, 2, P, H, W)
            to_cc = self.cross_view.cooccurrence(f_cc, f_mlo, maps[:, 0], maps[:, 1])  # (B, P)
            to_mlo = self.cross_view.cooccurrence(f_mlo, f_cc, maps[:, 1], maps[:, 0])  # (B, P)
            cooccurrence = (to_cc + to_mlo) / 2 * both[:, None]
            if both.any():
                consistency = self.cross_view.consistency(f_cc[both], f_mlo[both])
        logits = self.head.last_layer(breast_similarities) + self.cross_view.cooccurrence_layer(cooccurrence)
        view_distances = distances.masked_fill(absent[..., None, None], 0)  # (B, 2, P, H, W)
        return MultiViewOutput(
            logits=logits,
            similarities=breast_similarities,
            min_distances=breast_min_distances,
            distance_maps=torch.where(present[:, 0, None, None, None], view_distances[:, 0], view_distances[:, 1]),
            view_similarities=similarities.masked_fill(absent, 0),
            view_min_distances=min_distances.masked_fill(absent, 0),
            view_distance_maps=view_distances,
            cooccurrence=cooccurrence,
            views_present=present,
            consistency=consistency,
        )

    @staticmethod
    def _views_present(cc: Tensor | None, mlo: Tensor | None, present: Tensor | None) -> Tensor:
        """(B, 2) bool: the views given, and-ed with ``present``; every breast needs one view."""
        reference = cc if cc is not None else mlo
        if reference is None:
            raise ValueError("both views are None; give at least one view of the breast: model(cc, mlo)")
        batch = reference.shape[0]
        mask = torch.tensor([cc is not None, mlo is not None], device=reference.device).expand(batch, 2)
        if present is not None:
            present = torch.as_tensor(present, dtype=torch.bool, device=reference.device)
            if present.shape != (batch, 2):
                raise ValueError(
                    f"present must be a (B, 2) = ({batch}, 2) bool mask (CC, MLO), got {tuple(present.shape)}"
                )
            mask = mask & present
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"breasts {empty} of the batch have no view present; drop them or give a view")
        return mask

    def parameter_groups(self) -> dict[str, list]:
        """ProtoPNet's groups; the cross-view layers train with the add-on, their last-layer block with the last layer."""
        groups = super().parameter_groups()
        cross = self.cross_view
        for module in (cross.query, cross.key, cross.projector, cross.predictor):
            groups["add_on"] += list(module.parameters())
        groups["last_layer"] += list(cross.cooccurrence_layer.parameters())
        return groups


def _place_single_view(distances: Tensor, view: int) -> Tensor:
    """(B, 1, ...) maps of one view -> (B, 2, ...) with zeros in the other (masked) view's slot."""
    pair = [distances, torch.zeros_like(distances)]
    return torch.cat(pair if view == 0 else pair[::-1], dim=1)


def two_view_inputs(batch: dict[str, Any]) -> tuple[Tensor | None, Tensor | None]:
    """``model(cc, mlo)`` from ``batch["views"]``; a view absent from the batch is None."""
    views = batch["views"]
    return tuple(views[v]["image"] if v in views else None for v in VIEWS)


def one_view_logits(model: MultiViewProtoPNet, x: Tensor, view: str) -> Tensor:
    """(B, K) breast logits from one view alone (the other missing): what post-hoc saliency explains per view."""
    return model(**{name: x if name == view else None for name in VIEWS}).logits


register_family(
    Family(
        example_data="synthetic-mammo",
        name="protopnet_multiview",
        model_class=MultiViewProtoPNet,
        title="multi-view (CC/MLO) ProtoPNet",
        paper=PAPER,
        requires=("views", "label"),
        inputs=two_view_inputs,
        views=breast_views,
        input_names=VIEWS,
        loss="protozoo.train.losses_multiview:multiview_loss",
        explainer="protozoo.explanation:explain_multiview",
        panel="protozoo.viz.multiview:render_multiview_panel",
        recipe={"push_foreground": True},  # prototypes come from the breast, never the background
        saliency_branches={"logits": "protozoo.models.multiview:one_view_logits"},
    )
)
