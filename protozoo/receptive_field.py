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

The boxes also persist on disk, one small JSON file per key under ``$PROTOZOO_CACHE/receptive_fields``
(``~/.cache/protozoo`` by default, as the converted backbone weights): the first push of a process
(``protozoo push``, a new training run) reads the cells probed by earlier processes instead of
probing them again, so only the first push of an architecture and input size on a machine probes.
The file's key adds the probe's version and those of protozoo, torch and timm, and is checked on
reading; a missing, unreadable or foreign file is a cache miss, a folder that cannot be written is
no cache. ``PROTOZOO_RF_DISK_CACHE=0`` turns the disk cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import timm
import torch
from torch import Tensor

from protozoo.backbone_weights import cache_dir
from protozoo.boxes import mask_boxes
from protozoo.models._base import ProtoModel

__all__ = ["cache_file", "clear_cache", "probe_receptive_field_boxes", "receptive_field_boxes"]

_CHUNK = 16  # cells per backward pass
_MAX_KEYS = 32
PROBE_VERSION = 1  # bump when the probe's definition changes: the files on disk are then other keys
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
    key = cache_key(model, input_size)
    if key not in _cache:
        _cache[key] = _read_disk(key)  # {} when no earlier process probed this key
    known = _cache[key]
    _cache.move_to_end(key)
    while len(_cache) > _MAX_KEYS:
        _cache.popitem(last=False)
    wanted = [tuple(c) for c in cells.tolist()]
    new = sorted({c for c in wanted if c not in known})
    if new:
        boxes = probe_receptive_field_boxes(model, torch.tensor(new, dtype=torch.long), input_size)
        known.update(zip(new, boxes.tolist()))
        _write_disk(key, {**_read_disk(key), **known})  # with what other processes added meanwhile
    return torch.tensor([known[c] for c in wanted], dtype=torch.long).reshape(len(wanted), 4)


def cache_key(model: ProtoModel, input_size: tuple[int, int]) -> tuple:
    """What the boxes depend on: the architecture (class, config, module tree), the input size, and which
    weight tensors are all zero."""
    zero = tuple(name for name, t in model.state_dict().items() if t.is_floating_point() and not t.any())
    config = json.dumps(model.model_args(), sort_keys=True, default=str)
    tree = hashlib.sha256(repr(model).encode()).hexdigest()
    return type(model).__module__, type(model).__qualname__, config, tuple(input_size), zero, tree


def clear_cache(*, disk: bool = False) -> None:
    """Forget every box probed so far in this process; with ``disk=True`` also the files of every key."""
    _cache.clear()
    folder = _disk_folder()
    if disk and folder is not None and folder.is_dir():
        for file in folder.glob("*.json"):
            file.unlink(missing_ok=True)


def cache_file(key: tuple) -> Path | None:
    """The JSON file holding the boxes of a :func:`cache_key` on disk (None: disk cache off)."""
    folder = _disk_folder()
    return folder / f"{hashlib.sha256(_disk_key(key).encode()).hexdigest()[:32]}.json" if folder else None


def _disk_folder() -> Path | None:
    if os.environ.get("PROTOZOO_RF_DISK_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    return cache_dir() / "receptive_fields"


def _disk_key(key: tuple) -> str:
    """The key with what else the probe's result depends on across processes: its definition, the
    libraries that run it, and the module tree (``repr(model)``: layers, strides, paddings), so that a
    changed architecture behind the same config is another key."""
    from protozoo import __version__

    versions = {"probe": PROBE_VERSION, "protozoo": __version__, "torch": torch.__version__, "timm": timm.__version__}
    return json.dumps([list(key[:3]), list(key[3]), list(key[4]), versions, key[5]])


def _read_disk(key: tuple) -> dict[tuple[int, int], list[int]]:
    """The boxes stored for ``key`` ({} if none, or the file is unreadable or holds another key)."""
    file = cache_file(key)
    try:
        stored = json.loads(file.read_text())
        if stored["key"] != _disk_key(key):
            return {}
        return {(int(h), int(w)): [int(v) for v in box] for h, w, *box in stored["boxes"]}
    except (AttributeError, OSError, ValueError, KeyError, TypeError):  # AttributeError: disk cache off
        return {}


def _write_disk(key: tuple, known: dict[tuple[int, int], list[int]]) -> None:
    """Store the boxes of ``key`` atomically (a temporary file renamed over the old one); a folder that
    cannot be written leaves the boxes in memory only."""
    file = cache_file(key)
    if file is None:
        return
    text = json.dumps({"key": _disk_key(key), "boxes": [[h, w, *box] for (h, w), box in sorted(known.items())]})
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=file.parent, prefix=file.stem, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, file)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(temporary)


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
