"""Receptive-field boxes of latent cells: probed once per architecture and input size, then looked up.

The box of a latent cell is the bounding box of the input pixels with a nonzero gradient of that
cell on a fixed random probe image (:func:`probe_receptive_field_boxes`): the pixels the cell
actually reads. A probe is a backward pass per cell (a few times the cost of a forward pass of an
image), so a push that probed its chosen cells every time spent a large share of its time there.
The boxes depend on the architecture and the input size, not on the training state: the gradient's
support is where some path of nonzero weights reaches the pixel, the same for any generic weights
(checked on every cell of efficientnet_lite0 with ImageNet and random weights, of resnet18, vgg16
and densenet121 with two random inits, and on the zoo models' stored provenance). The one
exception is a weight tensor that is exactly zero, like the last BatchNorm scale of each timm
ResNet block at init, which cuts its branch out. So :func:`receptive_field_boxes` keeps, per
(model class, architecture config, input size, names of the all-zero tensors), the boxes of the
cells probed so far, and probes only cells it has not seen.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import torch
from torch import Tensor

from protozoo.boxes import mask_boxes
from protozoo.models._base import ProtoModel

__all__ = ["clear_cache", "probe_receptive_field_boxes", "receptive_field_boxes"]

_CHUNK = 16  # cells per backward pass
_MAX_KEYS = 32
_cache: OrderedDict[tuple, dict[tuple[int, int], list[int]]] = OrderedDict()


def receptive_field_boxes(model: ProtoModel, cells: Tensor, input_size: tuple[int, int]) -> Tensor:
    """The input box each latent cell depends on, probed once per architecture and input size.

    Args:
        model: The model (eval mode).
        cells: (N, 2) latent cells [h, w].
        input_size: (H_in, W_in) of the images.

    Returns:
        (N, 4) long boxes [x0, y0, x1, y1], half-open, exactly :func:`probe_receptive_field_boxes`'s.
    """
    known = _cache.setdefault(cache_key(model, input_size), {})
    _cache.move_to_end(cache_key(model, input_size))
    while len(_cache) > _MAX_KEYS:
        _cache.popitem(last=False)
    wanted = [tuple(c) for c in cells.tolist()]
    new = sorted({c for c in wanted if c not in known})
    if new:
        boxes = probe_receptive_field_boxes(model, torch.tensor(new, dtype=torch.long), input_size)
        known.update(zip(new, boxes.tolist()))
    return torch.tensor([known[c] for c in wanted], dtype=torch.long).reshape(len(wanted), 4)


def cache_key(model: ProtoModel, input_size: tuple[int, int]) -> tuple:
    """What the boxes depend on: the architecture, the input size, and which weight tensors are all zero."""
    zero = tuple(name for name, t in model.state_dict().items() if t.is_floating_point() and not t.any())
    config = json.dumps(model.model_args(), sort_keys=True, default=str)
    return type(model).__module__, type(model).__qualname__, config, tuple(input_size), zero


def clear_cache() -> None:
    """Forget every box probed so far."""
    _cache.clear()


def probe_receptive_field_boxes(model: ProtoModel, cells: Tensor, input_size: tuple[int, int]) -> Tensor:
    """The input box each latent cell depends on: the support of its input gradient on a probe image.

    The probe is a fixed N(0, 1) image; the gradient of a random projection of the cell's latent
    vector is nonzero exactly on the pixels the cell reads (barring exact cancellation), which for a
    CNN is its receptive field clipped to the image (a max-pool can hide a few border pixels of the
    theoretical one) and for a ViT the whole image. One forward pass of the probe serves all cells;
    each cell is one vector-Jacobian product, batched.

    Args:
        model: The model (eval mode).
        cells: (N, 2) latent cells [h, w].
        input_size: (H_in, W_in) of the images.

    Returns:
        (N, 4) long boxes [x0, y0, x1, y1], half-open; the whole image where the gradient vanishes.
    """
    device = model.prototypes.device
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(1, model.config.in_chans, *input_size, generator=generator).to(device)
    projection = torch.randn(model.prototypes.shape[1], generator=generator).to(device)  # (D,)
    boxes = []
    with torch.enable_grad():
        x = probe.clone().requires_grad_(True)
        z = model.latent(x)[0]  # (D, H, W)
        cells = cells.to(device)
        for chunk in cells.split(_CHUNK):
            picked = (z[:, chunk[:, 0], chunk[:, 1]] * projection[:, None]).sum(dim=0)  # (n,) one output per cell
            seeds = torch.eye(len(chunk), device=device)  # (n, n): row i selects cell i
            (grad,) = torch.autograd.grad(picked, x, seeds, retain_graph=True, is_grads_batched=True)
            boxes.append(mask_boxes(grad[:, 0].abs().sum(dim=1) > 0))  # grad: (n, 1, C, H_in, W_in)
    return torch.cat(boxes).cpu() if boxes else torch.zeros(0, 4, dtype=torch.long)
