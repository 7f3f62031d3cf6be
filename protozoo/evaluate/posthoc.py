"""Post-hoc saliency baselines (Grad-CAM, Grad-CAM++, Score-CAM through the ``grad-cam`` package) as
(B, H, W) maps for :func:`~protozoo.evaluate.localization_from_maps`.

Works with no configuration on every protozoo model (target layer: the backbone whose output the
heads read; the logits of the family's ``saliency_branches``: BRAIxProtoPNet++'s ``global`` CNN
branch, the paper's comparison, or its ``ensemble``; one view at a time of a multi-view model), on
plain timm classifiers (target layer from ``feature_info``) and on any ``nn.Module`` (the last
spatial layer its logits depend on, or an explicit one). Maps are the package's: ReLU'd, min-max
scaled to [0, 1] per image, resized to the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from protozoo.evaluate._parts import iterate_batches, model_device
from protozoo.evaluate.localization import CLASS_SOURCES, LocalizationResult, _summarise, per_image_localization

METHODS = ("gradcam", "gradcam++", "scorecam")


def image_logits(model: nn.Module, x: Tensor, view: str = "image") -> Tensor:
    """(B, K) the model's logits on one batch of images (``model(x).logits`` for protozoo models)."""
    output = model(x)
    return output.logits if hasattr(output, "logits") else output


def default_target_layer(model: nn.Module) -> nn.Module:
    """The layer whose activations Grad-CAM weights, found without configuration.

    - a timm classifier: its deepest feature stage (``model.feature_info[-1]["module"]``);
    - a protozoo model: its ``backbone``, the module whose (B, C, H, W) output every head reads
      (the backbones are cut at their feature stage, so this output is on the logits' graph;
      the deepest conv of a timm feature wrapper need not be);
    - any other module: the last module, in execution order, whose output is a spatial
      (B, C, H, W) map with H * W > 1 that the logits depend on (found on a probe forward).

    Raises:
        ValueError: No such layer; pass ``target_layer`` explicitly.
    """
    info = getattr(model, "feature_info", None)
    if info:
        return model.get_submodule(info[-1]["module"])
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        return backbone
    layer = _last_spatial_layer(model)
    if layer is None:
        name = type(model).__name__
        raise ValueError(
            f"{name} has no timm feature_info and no spatial layer feeding its logits; "
            "pass target_layer=<the nn.Module to explain>"
        )
    return layer


def _last_spatial_layer(model: nn.Module) -> nn.Module | None:
    """The last module of a probe forward whose spatial output the logits depend on (None if none)."""
    in_chans = getattr(getattr(model, "config", None), "in_chans", 3)
    side = max(64, int(getattr(model, "min_input_size", 32)) * 2)
    fired: list[tuple[nn.Module, Tensor]] = []

    def record(module, inputs, output):
        if (
            isinstance(output, Tensor)
            and output.ndim == 4
            and output.shape[-1] * output.shape[-2] > 1
            and output.requires_grad
        ):
            fired.append((module, output))

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with torch.enable_grad():
            logits = image_logits(model, torch.randn(1, in_chans, side, side, device=model_device(model)))
            outputs = [output for _, output in fired]
            grads = torch.autograd.grad(logits.sum(), outputs, allow_unused=True) if outputs else []
    finally:
        for handle in handles:
            handle.remove()
    on_graph = [module for (module, _), grad in zip(fired, grads) if grad is not None]
    return on_graph[-1] if on_graph else None


class _Branch(nn.Module):
    """A model seen through one branch's logits on one view's images (what Grad-CAM differentiates)."""

    def __init__(self, model: nn.Module, branch=image_logits, view: str = "image"):
        super().__init__()
        self.model, self.branch, self.view = model, branch, view

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(self.model, x, self.view)


def saliency_branches(model: nn.Module) -> dict[str, object]:
    """``{branch name: (model, x, view) -> logits}`` a model's post-hoc maps can explain, the
    default first: its family's ``saliency_branches`` (BRAIxProtoPNet++: ``global``, then
    ``ensemble``), ``{"logits": image_logits}`` for models of no protozoo family."""
    from protozoo.family import resolve_ref

    family = _family(model)
    if family is None:
        return {"logits": image_logits}
    return {name: resolve_ref(ref) for name, ref in family.saliency_branches.items()}


def _family(model: nn.Module):
    from protozoo.family import family_of

    try:
        return family_of(model)
    except TypeError:
        return None


def posthoc_maps(
    model: nn.Module,
    images: Tensor,
    method: str = "gradcam",
    *,
    target_layer: nn.Module | None = None,
    targets: Tensor | None = None,
    batch_size: int = 32,
    branch: str | None = None,
    view: str = "image",
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
        branch: Which logits to explain (a key of :func:`saliency_branches`: ``"global"`` or
            ``"ensemble"`` for BRAIxProtoPNet++, ``"logits"`` otherwise); None: the first.
        view: The view ``images`` are (a multi-view model is explained one view at a time).

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
    branches = saliency_branches(model)
    if branch is not None and branch not in branches:
        raise ValueError(f"unknown branch {branch!r} of {type(model).__name__}; available: {', '.join(branches)}")
    wrapped = _Branch(model, branches[branch or next(iter(branches))], view)
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
    class_source: str = "true",
    branch: str | None = None,
    threshold: float = 0.5,
    top_fraction: float = 0.05,
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> LocalizationResult:
    """Localization scores of post-hoc maps over a dataset with masks, with no configuration.

    The same images and class choice as :func:`~protozoo.evaluate.localization` by default (the
    true class; every view of a multi-view model, each an image), so the two are side by side.

    Args:
        model: A protozoo model (any family) or a classifier (see :func:`posthoc_maps`).
        dataset: Items with ``image`` (or the family's views), ``label`` and ``mask``.
        method: One of :data:`METHODS`.
        target_layer: See :func:`posthoc_maps` (default: :func:`default_target_layer`).
        class_source: Explain the ``"true"`` class (default; the first positive class for
            multi-hot labels) or the ``"predicted"`` one.
        branch: See :func:`posthoc_maps` (BRAIxProtoPNet++: ``"global"``, its global CNN branch,
            the paper's comparison, by default; ``"ensemble"``).
        threshold: See :func:`~protozoo.evaluate.localization_from_maps`.
        top_fraction: See :func:`~protozoo.evaluate.localization_from_maps`.
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.
    """
    if class_source not in CLASS_SOURCES:
        raise ValueError(f"class_source must be one of {CLASS_SOURCES}, got {class_source!r}")
    device = torch.device(device) if device is not None else model_device(model)
    family = _family(model)
    branches = saliency_branches(model)
    branch = branch or next(iter(branches))
    layer = target_layer if target_layer is not None else default_target_layer(model)
    per_image: dict[str, list[Tensor]] = {}
    for batch in iterate_batches(dataset, batch_size, device):
        views = family.image_views(batch) if family is not None else {"image": batch}
        for view, items in views.items():
            if "mask" not in items:
                raise ValueError("posthoc_localization needs items with a 'mask' (L, H, W); this dataset has none")
            targets = None
            if class_source == "true":
                labels = family.resolved("targets")(items) if family is not None else items["label"]
                labels = torch.as_tensor(labels)
                targets = labels if labels.ndim == 1 else labels.float().argmax(dim=1)
            maps = posthoc_maps(
                model, items["image"], method, target_layer=layer, targets=targets, branch=branch, view=view
            )
            scores = per_image_localization(maps, items["mask"], threshold=threshold, top_fraction=top_fraction)
            for name, value in scores.items():
                per_image.setdefault(name, []).append(value)
    if not per_image:
        raise ValueError("the dataset is empty")
    details = {"map": method, "class_source": class_source, "branch": branch}
    return _summarise({name: torch.cat(values) for name, values in per_image.items()}, threshold, top_fraction, details)
