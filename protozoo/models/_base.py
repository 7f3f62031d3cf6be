"""What every protozoo model shares: a JSON-able config, input checks, save/push."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from protozoo import hub
from protozoo.pretrained import PretrainedCfg


class ProtoModel(nn.Module):
    """Base of protozoo models: an ``nn.Module`` that does the forward pass and nothing else.

    Subclasses set ``config_class`` (a dataclass of JSON-able architecture arguments, with
    ``arch``, ``num_classes`` and ``in_chans`` fields) and ``class_dependent`` (the state-dict keys
    that depend on the number of classes, re-initialised when a model is loaded with another
    ``num_classes``). Machinery (push, training, evaluation) lives in functions that take a model.
    """

    config_class: ClassVar[type]
    class_dependent: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.pretrained_cfg = PretrainedCfg(architecture=config.arch, input_size=(config.in_chans, 224, 224))
        self.provenance: list[dict[str, Any]] | None = None  # push provenance, one row per prototype

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def min_input_size(self) -> int:
        """Smallest height/width that still gives a feature map (the backbone's stride)."""
        return self.backbone.reduction

    def check_input(self, x: Tensor) -> Tensor:
        """The batch as this model reads it, or a ValueError that names the problem and the fix.

        Checks the rank, the channel count, the spatial size against the backbone stride, the
        dtype and NaN/Inf values (which would otherwise silently poison every distance). Floating
        point images of another precision (float64, float16, bfloat16) are converted to the
        model's dtype; integer and bool tensors are refused, since they are unnormalised pixels
        (or masks) whose scale the model cannot know.
        """
        c = self.config.in_chans
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"expected a batch of images (B, {c}, H, W), got {shape}; add a batch dim with x[None]"
                + ("" if isinstance(x, Tensor) else " (and convert it to a torch tensor)")
            )
        if not x.is_floating_point():
            raise ValueError(
                f"expected float images normalised as the model was trained, got a {x.dtype} tensor; scale the "
                "pixels to [0, 1] and normalise them with the model's mean and std "
                "(protozoo.data.build_transforms(protozoo.data.resolve_data_config(model), train=False))"
            )
        dtype = next(iter(self.parameters()), x).dtype
        if x.dtype != dtype:
            x = x.to(dtype)
        if x.shape[1] != c:
            fix = "convert the images to grayscale" if c == 1 else f"give {c}-channel images"
            raise ValueError(
                f"expected {c} input channel(s) (B, {c}, H, W), got {x.shape[1]} in shape {tuple(x.shape)}; "
                f"{fix}, or build the model with in_chans={x.shape[1]}"
            )
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"image size {tuple(x.shape[-2:])} is smaller than the backbone's stride "
                f"({self.min_input_size} px); resize the images to at least {self.min_input_size} px"
            )
        # NaN carries through min/max and +-Inf lands at an end: one reduction, no (B, C, H, W) mask
        low, high = torch.aminmax(x.detach()) if x.numel() else (x.new_zeros(()), x.new_zeros(()))
        if not (torch.isfinite(low) and torch.isfinite(high)):
            raise ValueError("input contains NaN or Inf values; check the image loading and normalisation")
        return x

    def model_args(self) -> dict[str, Any]:
        """The architecture arguments, JSON-able (what ``config.json`` stores)."""
        return asdict(self.config)

    def count_parameters(self) -> dict[str, int]:
        """Parameter counts per top-level child module and in all."""
        counts = {name: sum(p.numel() for p in child.parameters()) for name, child in self.named_children()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def save_pretrained(self, directory: str | Path, *, metrics: dict[str, Any] | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` (and ``prototypes.json`` after a push; with
        ``metrics``, ``metrics.json`` and a model card: :func:`protozoo.hub.save_pretrained`)."""
        return hub.save_pretrained(self, directory, metrics=metrics)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the saved files to the Hugging Face Hub (``huggingface_hub.upload_folder``)."""
        return hub.push_to_hub(self, repo_id, **kwargs)
