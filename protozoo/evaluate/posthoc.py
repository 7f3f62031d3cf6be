"""Post-hoc saliency baselines (Grad-CAM, Grad-CAM++, Score-CAM through the ``grad-cam`` package) as
(B, H, W) maps for :func:`~protozoo.evaluate.localization_from_maps`.

Works for plain timm classifiers (target layer found from ``feature_info``) and for any
``nn.Module`` given a target layer; a module returning an object with ``.logits`` (a protozoo
model, e.g. the global branch of BRAIxProtoPNet++ through its ensemble logits) is read through its
logits. Maps are the package's: ReLU'd, min-max scaled to [0, 1] per image, resized to the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from protozoo.evaluate._parts import iterate_batches, model_device
from protozoo.evaluate.localization import CLASS_SOURCES, LocalizationResult, _summarise, per_image_localization

METHODS = ("gradcam", "gradcam++", "scorecam")


def default_target_layer(model: nn.Module) -> nn.Module:
    """The deepest feature stage of a timm model (``model.feature_info[-1]["module"]``).

    Raises:
        ValueError: The model has no timm ``feature_info``; pass ``target_layer`` explicitly.
    """
    info = getattr(model, "feature_info", None)
    if not info:
        name = type(model).__name__
        raise ValueError(f"{name} has no timm feature_info; pass target_layer=<the nn.Module to explain>")
    return model.get_submodule(info[-1]["module"])


class _Logits(nn.Module):
    """A model seen through its logits (protozoo models return an output dataclass)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        output = self.model(x)
        return output.logits if hasattr(output, "logits") else output


def posthoc_maps(
    model: nn.Module,
    images: Tensor,
    method: str = "gradcam",
    *,
    target_layer: nn.Module | None = None,
    targets: Tensor | None = None,
    batch_size: int = 32,
) -> Tensor:
    """(B, H, W) saliency maps of ``method`` for the given (or predicted) classes.

    Args:
        model: A classifier returning logits (or an object with ``.logits``).
        images: (B, C, H, W) normalised images.
        method: ``"gradcam"`` (Selvaraju et al. 2017), ``"gradcam++"`` (Chattopadhay et al. 2018) or
            ``"scorecam"`` (Wang et al. 2020).
        target_layer: The layer whose activations are weighted; None uses :func:`default_target_layer`.
        targets: (B,) class to explain per image; None explains the predicted class.
        batch_size: Masked images per forward pass of Score-CAM.

    Returns:
        (B, H, W) maps in [0, 1].
    """
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("post-hoc maps need the grad-cam package: pip install 'protozoo[posthoc]'") from err
    methods = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM}
    if method not in methods:
        raise ValueError(f"unknown post-hoc method {method!r}; available: {', '.join(METHODS)}")
    layer = target_layer if target_layer is not None else default_target_layer(model)
    wrapped = _Logits(model)
    if targets is None:
        with torch.no_grad():
            targets = wrapped(images).argmax(dim=1)  # (B,)
    cam = methods[method](model=wrapped, target_layers=[layer])
    if method == "scorecam":
        cam.batch_size = batch_size
    with torch.enable_grad():
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])  # (B, H, W)
    return torch.from_numpy(maps).float()


def gradcam(model: nn.Module, images: Tensor, **options) -> Tensor:
    """Grad-CAM maps; see :func:`posthoc_maps`."""
    return posthoc_maps(model, images, "gradcam", **options)


def posthoc_localization(
    model: nn.Module,
    dataset: Dataset,
    *,
    method: str = "gradcam",
    target_layer: nn.Module | None = None,
    class_source: str = "predicted",
    threshold: float = 0.5,
    top_fraction: float = 0.05,
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> LocalizationResult:
    """Localization scores of post-hoc maps over a dataset with masks.

    Args:
        model: Classifier (see :func:`gradcam`).
        dataset: Items with ``image``, ``label`` and ``mask``.
        method: One of :data:`METHODS`.
        target_layer: See :func:`gradcam`.
        class_source: Explain the ``"predicted"`` class (default) or the ``"true"`` one (the first
            positive class for multi-hot labels).
        threshold: See :func:`~protozoo.evaluate.localization_from_maps`.
        top_fraction: See :func:`~protozoo.evaluate.localization_from_maps`.
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.
    """
    if class_source not in CLASS_SOURCES:
        raise ValueError(f"class_source must be one of {CLASS_SOURCES}, got {class_source!r}")
    device = torch.device(device) if device is not None else model_device(model)
    per_image: dict[str, list[Tensor]] = {}
    for batch in iterate_batches(dataset, batch_size, device):
        labels = batch["label"]
        targets = None if class_source == "predicted" else labels if labels.ndim == 1 else labels.float().argmax(dim=1)
        maps = posthoc_maps(model, batch["image"], method, target_layer=target_layer, targets=targets)
        scores = per_image_localization(maps, batch["mask"], threshold=threshold, top_fraction=top_fraction)
        for name, value in scores.items():
            per_image.setdefault(name, []).append(value)
    if not per_image:
        raise ValueError("the dataset is empty")
    details = {"map": method, "class_source": class_source}
    return _summarise({name: torch.cat(values) for name, values in per_image.items()}, threshold, top_fraction, details)
