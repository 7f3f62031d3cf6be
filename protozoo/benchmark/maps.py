"""Every method's (N, h, w) explanation maps of a dataset, made exactly as the evaluators make them:
post-hoc maps of the plain classifier for the image's true class (``posthoc_localization``), the
most activated own-class prototype's map of the ProtoPNet (``localization``)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from protozoo.evaluate._parts import iterate_batches, model_device, prototype_maps
from protozoo.evaluate.localization import top_prototype_maps
from protozoo.evaluate.posthoc import posthoc_maps
from protozoo.resample import upsample_bicubic

POSTHOC_MODEL = "classifier"
PROTOTYPE_MODEL = "protopnet"


def explained_model(method: str) -> str:
    """Which of the pair a method explains."""
    return PROTOTYPE_MODEL if method == "prototypes" else POSTHOC_MODEL


def explain_images(method: str, model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """(B, h, w) maps of ``method`` for the true classes ``labels`` of (B, C, H, W) ``images``."""
    if method == "prototypes":
        batch = {"image": images, "label": labels}
        with torch.no_grad():
            return top_prototype_maps(model, batch, prototype_maps(model, batch)["image"], "true")
    if method != "scorecam":
        return posthoc_maps(model, images, method, targets=labels)
    with contextlib.redirect_stderr(io.StringIO()):  # grad-cam's Score-CAM draws a tqdm bar per image batch
        return posthoc_maps(model, images, method, targets=labels)


def input_attributions(method: str, model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """(B, C, H, W) the maps at input resolution (bicubic, as the localization scores upsample),
    repeated over the channels: the attribution shape captum's metrics expect."""
    maps = explain_images(method, model, images, labels)
    if tuple(maps.shape[-2:]) != tuple(images.shape[-2:]):
        maps = upsample_bicubic(maps, tuple(images.shape[-2:]))
    return maps.to(images.device)[:, None].expand_as(images).contiguous()


@dataclass
class Maps:
    """Maps of one method over a dataset, with what they are scored against."""

    maps: Tensor  # (N, h, w)
    masks: Tensor  # (N, L, H, W)
    labels: Tensor  # (N,)


def dataset_maps(method: str, model: nn.Module, dataset: Dataset, *, batch_size: int) -> Maps:
    """One method's maps of every item of ``dataset`` (items with ``image``, ``label``, ``mask``)."""
    device = model_device(model)
    maps, masks, labels = [], [], []
    for batch in iterate_batches(dataset, batch_size, device):
        if "mask" not in batch:
            raise ValueError(
                "the benchmark scores maps against masks: the dataset's items have no 'mask' "
                "(use a synthetic dataset or folder:PATH with masks)"
            )
        maps.append(explain_images(method, model, batch["image"], batch["label"]).cpu())
        masks.append(batch["mask"].cpu())
        labels.append(batch["label"].cpu())
    return Maps(torch.cat(maps), torch.cat(masks), torch.cat(labels))
