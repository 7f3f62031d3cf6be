"""Any timm model as a feature extractor giving one (B, C, H, W) map.

CNNs go through timm's ``features_only`` wrappers; ViTs go through the same flag, which timm
implements with ``forward_intermediates`` in NCHW (tokens reshaped onto the patch grid), so one
mechanism covers both. Construction never reads files: weights are loaded afterwards by
:func:`protozoo.backbone_weights.load_backbone_weights`.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import Tensor, nn


class Backbone(nn.Module):
    """A timm model truncated to one feature stage.

    Args:
        name: Any timm model name (``resnet18``, ``convnext_tiny``, ``vit_tiny_patch16_224``...).
        in_chans: Input channels; 1 for mammograms and X-rays.
        stage: Index of the feature stage to use (timm ``out_indices``); -1 is the deepest.
        **timm_kwargs: Passed to ``timm.create_model`` (``drop_path_rate``, ``img_size``...).
    """

    def __init__(self, name: str, *, in_chans: int = 3, stage: int = -1, **timm_kwargs: Any):
        super().__init__()
        self.name = name
        self.in_chans = in_chans
        self.stage = stage
        self.timm_kwargs = timm_kwargs
        self.body = create_timm_features(name, in_chans=in_chans, stage=stage, pretrained=False, **timm_kwargs)
        info = self.body.feature_info
        self.out_channels: int = info.channels()[-1]
        self.reduction: int = info.reduction()[-1]  # input pixels per feature-map cell

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> (B, C, H / reduction, W / reduction)."""
        return self.body(x)[-1]


def create_timm_features(name: str, *, in_chans: int, stage: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.create_model(..., features_only=True)`` with ViT-friendly defaults and clear errors."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown timm backbone {name!r}{hint} (timm.list_models() lists them)")
    args = dict(features_only=True, out_indices=(stage,), in_chans=in_chans, pretrained=pretrained, **kwargs)
    try:
        # Transformers accept any input size only with dynamic_img_size; CNNs reject the flag.
        return timm.create_model(name, dynamic_img_size=True, **args)
    except TypeError:
        return timm.create_model(name, **args)
