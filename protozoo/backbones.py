"""Any timm model as a feature extractor giving one (B, C, H, W) map.

CNNs go through timm's ``features_only`` wrappers; ViTs go through the same flag, which timm
implements with ``forward_intermediates`` in NCHW (tokens reshaped onto the patch grid), so one
mechanism covers both. Construction never reads files: weights are loaded afterwards by
:func:`protozoo.backbone_weights.load_backbone_weights`.

The backbone stops at its stage. Two kinds of timm wrapper build and run the whole network
whatever ``out_indices`` says: the EfficientNet/MobileNet builders' ``*Features`` classes
(``efficientnet_*``, ``tf_efficientnet_lite*``, ``mobilenetv1/v2/v3``) and the forward-hook
wrapper of models that cannot be re-written (``nasnetalarge``, ``legacy_xception``).
:func:`truncate_features` drops their blocks past the stage (the hook wrapper's model is pruned by
its own ``prune_intermediate_layers`` and read by ``forward_intermediates(stop_early=True)``), so
the outputs are unchanged and the layers whose output was thrown away are neither run nor stored.
Weight files saved before the truncation still load: the keys of the dropped layers
(:attr:`Backbone.pruned_keys`) are ignored.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

import timm
from timm.models._features import FeatureHookNet
from torch import Tensor, nn


class Backbone(nn.Module):
    """A timm model truncated to one feature stage.

    Args:
        name: Any timm model name (``resnet18``, ``convnext_tiny``, ``vit_tiny_patch16_224``...).
        in_chans: Input channels; 1 for mammograms and X-rays.
        stage: Index of the feature stage to use (timm ``out_indices``); -1 is the deepest.
        input_blur: Sigma (input pixels) of a Gaussian low-pass applied before the network
            (``torchvision.transforms.functional.gaussian_blur``, kernel 2 * ceil(3 sigma) + 1,
            reflected edges); 0: none. Pixel noise then averages out before the first convolution.
        **timm_kwargs: Passed to ``timm.create_model`` (``drop_path_rate``, ``img_size``...).
    """

    def __init__(self, name: str, *, in_chans: int = 3, stage: int = -1, input_blur: float = 0.0, **timm_kwargs: Any):
        super().__init__()
        if isinstance(input_blur, bool) or not isinstance(input_blur, (int, float)) or not input_blur >= 0:
            raise ValueError(f"input_blur must be a sigma >= 0 in input pixels (0: none), got {input_blur!r}")
        self.name = name
        self.input_blur = float(input_blur)
        self.in_chans = in_chans
        self.stage = stage
        self.timm_kwargs = timm_kwargs
        self.body = create_timm_features(name, in_chans=in_chans, stage=stage, pretrained=False, **timm_kwargs)
        # State-dict keys (relative to ``body``) of the layers past the stage that truncation dropped.
        self.pruned_keys: frozenset[str] = getattr(self.body, "pruned_keys", frozenset())
        self._register_load_state_dict_pre_hook(self._drop_pruned_keys)
        info = self.body.feature_info
        self.out_channels: int = info.channels()[-1]
        self.reduction: int = info.reduction()[-1]  # input pixels per feature-map cell

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> (B, C, H / reduction, W / reduction)."""
        if self.input_blur:
            from torchvision.transforms.functional import gaussian_blur

            x = gaussian_blur(x, kernel_size=2 * math.ceil(3 * self.input_blur) + 1, sigma=self.input_blur)
        return self.body(x)[-1]

    def _drop_pruned_keys(self, state_dict, prefix, *args) -> None:
        """Weights saved with the layers past the stage (before truncation) load: those keys go."""
        for key in self.pruned_keys:
            state_dict.pop(f"{prefix}body.{key}", None)


def pruned_state_keys(model: nn.Module) -> set[str]:
    """Keys of ``model``'s state dict that its backbones dropped as past their stage (see the module doc)."""
    return {
        f"{name}.body.{key}" if name else f"body.{key}"
        for name, module in model.named_modules()
        if isinstance(module, Backbone)
        for key in module.pruned_keys
    }


def create_timm_features(name: str, *, in_chans: int, stage: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.create_model(..., features_only=True)`` with ViT-friendly defaults and clear errors."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown timm backbone {name!r}{hint} (timm.list_models() lists them)")
    args = dict(features_only=True, out_indices=(stage,), in_chans=in_chans, pretrained=pretrained, **kwargs)
    try:
        # Transformers accept any input size only with dynamic_img_size; CNNs reject the flag.
        body = timm.create_model(name, dynamic_img_size=True, **args)
    except TypeError:
        body = timm.create_model(name, **args)
    return truncate_features(body)


def truncate_features(body: nn.Module) -> nn.Module:
    """A timm ``features_only`` model with one output, stopped at that output's stage.

    Returns ``body`` itself, its blocks past the stage dropped (EfficientNet/MobileNet ``*Features``),
    a :class:`StopAtStage` around its model (the forward-hook wrapper), or ``body`` unchanged (the
    other wrappers already stop: ``FeatureListNet`` keeps the modules up to its last output,
    ``FeatureGetterNet`` prunes). ``pruned_keys`` on the result names the state-dict keys dropped.
    """
    before = set(body.state_dict())
    stage_out = getattr(body, "_stage_out_idx", None)
    if isinstance(stage_out, Mapping) and getattr(body, "feature_hooks", True) is None:
        # forward(): stem, then blocks[i], emitting after block i when i + 1 is an output stage
        body.blocks = body.blocks[: max(stage_out)]
    elif isinstance(body, FeatureHookNet) and list(body.keys()) == ["body"]:
        model = body["body"]
        if hasattr(model, "forward_intermediates") and hasattr(model, "prune_intermediate_layers"):
            for handle in body.hooks._handles:  # a hook left on a kept module would hold its last output
                handle.remove()
            body = StopAtStage(model, body.feature_info)
    body.pruned_keys = frozenset(before - set(body.state_dict()))
    return body


class StopAtStage(nn.ModuleDict):
    """A timm model read at one feature stage by ``forward_intermediates(stop_early=True)``, pruned past it.

    Stands in for timm's ``FeatureHookNet(no_rewrite=True)`` (which runs the whole network and
    reads the stage with a hook) with the same state-dict keys (``body.*``) and the same output.
    """

    def __init__(self, model: nn.Module, feature_info):
        super().__init__({"body": model})
        self.feature_info = feature_info
        (index,) = feature_info.out_indices
        self.index = index % len(model.feature_info)  # -1: the deepest
        model.prune_intermediate_layers([self.index], prune_head=True)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self["body"].forward_intermediates(x, indices=[self.index], intermediates_only=True, stop_early=True)
