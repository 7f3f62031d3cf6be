"""Shared machinery of the evaluators.

- :func:`prototype_maps`, :func:`model_logits` and :func:`own_prototypes`: a model and a batch
  to ``{view: (B, P, H, W)}`` similarity maps, to logits and to the prototypes of each image's
  prototype class(es), each read from the model's family (:mod:`protozoo.family`).
- Batching (:func:`iterate_batches`), class masks, JSON conversion.
- The part geometry of Huang et al. (ICCV 2023): a fixed box around the peak of each bicubically
  upsampled map, and which visible parts lie inside it; :func:`scan_parts` runs it over a dataset
  and accumulates the per-prototype counts behind consistency and stability.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from protozoo.data.collate import collate_items, to_device
from protozoo.evaluate._checks import check_dataset_fits, check_whole
from protozoo.family import family_of
from protozoo.resample import bicubic_pair

REFERENCE_HALF_SIZE = 36  # Huang et al.: a 72 x 72 box ...
REFERENCE_INPUT_SIZE = 224  # ... at 224 x 224 input.

Batch = dict[str, Any]


def prototype_maps(
    model: nn.Module, batch: Batch, perturb: Callable[[Tensor], Tensor] | None = None
) -> dict[str, Tensor]:
    """Similarity maps of every prototype, per view of the model's family; higher = more alike.

    ``{"image": maps}`` for single-image families; ``{view: maps}`` for every view in the batch of
    a multi-view family (its prototypes are single-view latent patches).

    Args:
        model: A prototype model.
        batch: A collated batch (see :func:`protozoo.data.collate.collate_items`).
        perturb: Applied to each view's images first (stability's noise).

    Returns:
        ``{view name: (B, P, H, W) similarity maps}``, keyed as the family's views
        (``family_of(model).image_views(batch)``, which hold each view's ``image`` / ``parts`` / ``mask``).
    """
    views = family_of(model).image_views(batch)
    return {
        view: model.similarity_maps(items["image"] if perturb is None else perturb(items["image"]))
        for view, items in views.items()
    }


def model_logits(model: nn.Module, batch: Batch) -> Tensor:
    """(B, num_classes) logits of a batch, fed as the model's family feeds it (the diagnosis logits
    for the lesion head; ``model(cc, mlo)`` for a multi-view model); a plain classifier, of no
    protozoo family, gets ``batch["image"]`` and its output tensor is taken as is."""
    try:
        family = family_of(model)
    except TypeError:
        output = model(batch["image"])
        return output.logits if hasattr(output, "logits") else output
    return family.logits(model, batch)


def own_prototypes(model: nn.Module, batch: Batch, source: str = "true") -> Tensor:
    """(B, P) bool: the prototypes of each item's prototype classes, which the evaluators score.

    The family decides (:meth:`protozoo.family.Family.own_prototypes`): the prototypes of the
    image's class (any positive class of multi-hot labels) for ProtoPNet-style and multi-view
    heads, of the lesions present for the lesion head; from the labels (``source="true"``) or
    from what the model finds (``"predicted"``).
    """
    return family_of(model).own_prototypes(model, batch, source)


def pick_view(views: list[str], view: str | None) -> str:
    """``view`` if given and known, else the only view; raises a ValueError naming the choices."""
    if view is None and len(views) == 1:
        return views[0]
    if view in views:
        return view
    raise ValueError(f"choose a view with view=...; this model has views {views}")


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    parameter = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    return parameter.device if parameter is not None else torch.device("cpu")


def iterate_batches(dataset: Dataset, batch_size: int, device: torch.device, num_workers: int = 0) -> Iterator[Batch]:
    """Collated batches of the dataset in order, tensors moved to ``device``; ``num_workers`` DataLoader
    processes load (generate, transform, collate) the items while the model runs (0: in this process)."""
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_items, num_workers=num_workers
    )
    for batch in loader:
        yield to_device(batch, device)


def jsonable(value: Any) -> Any:
    """Tensors to (nested) lists, NaN to None, recursively through dicts, lists and tuples."""
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, dict):
        return {key: jsonable(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def box_half_size(height: int, half_size: int | None = None) -> int:
    """Half side of the box: ``half_size`` if given, else ``round(36 * height / 224)``."""
    return int(half_size) if half_size is not None else round(REFERENCE_HALF_SIZE * height / REFERENCE_INPUT_SIZE)


PEAK_CHUNK_PIXELS = 2**20  # upsampled pixels per chunk of candidate windows on the CPU (4 MB)


def peak_positions(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Peak of each map after bicubic upsampling to the input size.

    The same values as :func:`protozoo.resample.upsample_bicubic` (column pass ``half = map @ cols.T``,
    then each output pixel ``rows[y] @ half[:, x]``), but on the CPU only inside a window that
    must hold the peak: the upsampled value of row y is at most ``rows[y]+ @ max_x half +
    rows[y]- @ min_x half`` (and likewise for column x from the row pass), and one exact row through
    the low-res peak gives a value the peak reaches; rows and columns whose bound falls short of it
    (by more than a rounding margin) cannot hold the peak. On similarity maps the window is ~1/10
    of the image, so this runs several times faster than upsampling whole maps (the argmax over
    (N, H, W) dominated) and needs no (N, H, W) tensor. On a GPU the whole maps are upsampled.

    Args:
        maps: (N, h, w) similarity maps.
        size: (H, W) input size.

    Returns:
        (N, 2) long pixel (x, y) of the first maximum in row-major order.
    """
    rows, cols = bicubic_pair(maps, size)
    maps = maps.float()
    half = maps @ cols.T  # (N, h, W)
    if half.device.type != "cpu" or len(maps) == 0:
        flat = (rows @ half).flatten(1).argmax(dim=1) if len(maps) else torch.zeros(0, dtype=torch.long)  # (N,)
        return torch.stack([flat % size[1], flat // size[1]], dim=1).to(maps.device)  # (N, 2)
    # A value the peak reaches: the exact upsampled row nearest each map's low-res peak, at its best.
    low_row = maps.flatten(1).argmax(dim=1) // maps.shape[2]  # (N,)
    nearest = ((low_row + 0.5) * size[0] / maps.shape[1] - 0.5).round().long().clamp(0, size[0] - 1)  # (N,)
    reached = (rows[nearest][:, None, :] @ half)[:, 0].amax(dim=1)  # (N,)
    floor = reached - (1e-4 * maps.abs().flatten(1).amax(dim=1) + 1e-30)  # margin >> float rounding
    y0, y1 = _span(half, rows, floor)  # (N,) first and last row that can hold the peak
    x0, x1 = _span(maps.transpose(1, 2) @ rows.T, cols, floor)  # (N,) same for the columns (row pass, (N, w, H))
    heights, widths = y1 - y0 + 1, x1 - x0 + 1  # (N,)
    order = (heights * widths).argsort()  # similar windows side by side
    y0, y1, x0, x1, half = y0[order], y1[order], x0[order], x1[order], half[order]
    found = torch.empty(len(maps), 2, dtype=torch.long)  # in that order
    for start, end, tall, wide in _chunks(heights[order].tolist(), widths[order].tolist()):
        ys = torch.minimum(
            y0[start:end, None] + torch.arange(tall), y1[start:end, None]
        )  # (n, tall): past y1 repeats y1
        xs = torch.minimum(x0[start:end, None] + torch.arange(wide), x1[start:end, None])  # (n, wide)
        window = rows[ys] @ half[start:end].gather(2, xs[:, None, :].expand(-1, half.shape[1], -1))  # (n, tall, wide)
        # A repeated row or column comes after the one it repeats: the first maximum is a real pixel.
        flat = window.flatten(1).max(dim=1).indices  # (n,) first maximum, as argmax (and ~4x faster on the CPU)
        found[start:end, 0] = x0[start:end] + flat % wide
        found[start:end, 1] = y0[start:end] + flat // wide
    out = torch.empty_like(found)
    out[order] = found
    return out


def _span(half: Tensor, weights: Tensor, floor: Tensor) -> tuple[Tensor, Tensor]:
    """(N,) first and last output line whose upper bound reaches ``floor`` (N,).

    ``half`` (N, h, L) is one separable pass and ``weights`` (O, h) the other pass's matrix: output
    line o is ``weights[o] @ half``, whose values are at most ``weights[o]+ @ max half +
    weights[o]- @ min half``. No line qualifies only for NaN maps: then the whole span.
    """
    bound = half.amax(2) @ weights.clamp_min(0).T + half.amin(2) @ weights.clamp_max(0).T  # (N, O)
    candidate = bound >= floor[:, None]  # (N, O)
    lines = candidate.shape[1]
    none = ~candidate.any(dim=1)
    first = torch.where(none, 0, candidate.int().argmax(dim=1))
    last = torch.where(none, lines - 1, lines - 1 - candidate.flip(1).int().argmax(dim=1))
    return first, last


def _chunks(heights: list[int], widths: list[int]) -> Iterator[tuple[int, int, int, int]]:
    """Consecutive runs of windows that, padded to the run's largest height and width, hold at most
    ``PEAK_CHUNK_PIXELS`` pixels (a bigger window goes alone): (start, end, height, width)."""
    start = 0
    while start < len(heights):
        end, tall, wide = start + 1, heights[start], widths[start]
        while (
            end < len(heights)
            and (end + 1 - start) * max(tall, heights[end]) * max(wide, widths[end]) <= PEAK_CHUNK_PIXELS
        ):
            tall, wide, end = max(tall, heights[end]), max(wide, widths[end]), end + 1
        yield start, end, tall, wide
        start = end


def peak_boxes(peaks: Tensor, half: int, size: tuple[int, int]) -> Tensor:
    """(N, 2) pixel (x, y) peaks -> (N, 4) float boxes (x0, y0, x1, y1), bounds inclusive, clipped
    to the image, which spans [-0.5, W - 0.5] x [-0.5, H - 0.5] (pixel centres at integers)."""
    height, width = size
    low = (peaks.float() - half).clamp_min(-0.5)  # (N, 2)
    high = torch.minimum(peaks.float() + half, peaks.new_tensor([width - 0.5, height - 0.5], dtype=torch.float))
    return torch.cat([low, high], dim=1)


KEYPOINT_CONVENTIONS = ("float", "truncate")


def check_keypoints(keypoints: str) -> str:
    """``keypoints`` if it is a known convention, else a ValueError naming them."""
    if keypoints not in KEYPOINT_CONVENTIONS:
        raise ValueError(f"keypoints must be one of {KEYPOINT_CONVENTIONS}, got {keypoints!r}")
    return keypoints


def parts_in_boxes(boxes: Tensor, parts: Tensor, visible: Tensor, keypoints: str = "float") -> Tensor:
    """Which visible parts lie inside each box (bounds inclusive).

    Args:
        boxes: (N, 4) (x0, y0, x1, y1).
        parts: (N, K, 2) pixel (x, y).
        visible: (N, K) bool.
        keypoints: ``"float"`` tests the keypoints as given; ``"truncate"`` first truncates them
            to integers toward zero, as the reference code's ``int()`` does (for a box around an
            integer peak p the test is then ``p - h <= x < p + h + 1`` in the float keypoint).

    Returns:
        (N, K) bool; invisible parts are False.
    """
    if check_keypoints(keypoints) == "truncate":
        parts = parts.trunc()
    low, high = boxes[:, None, :2].to(parts.dtype), boxes[:, None, 2:].to(parts.dtype)  # (N, 1, 2)
    inside = ((parts >= low) & (parts <= high)).all(dim=2)  # (N, K)
    return inside & visible.bool()


def parts_inside(
    maps: Tensor, parts: Tensor, visible: Tensor, size: tuple[int, int], half: int, keypoints: str = "float"
) -> Tensor:
    """(N, h, w) maps, (N, K, 2) parts, (N, K) visibility -> (N, K) visible parts inside the box
    around each map's upsampled peak (``keypoints`` as in :func:`parts_in_boxes`)."""
    return parts_in_boxes(peak_boxes(peak_positions(maps, size), half, size), parts, visible, keypoints)


@dataclass
class PartCounts:
    """Per-prototype counts of one view, accumulated over a dataset by :func:`scan_parts`.

    Attributes:
        inside: (P, K) images of the prototype's class where part k is visible and inside the box.
        visible: (P, K) images of the prototype's class where part k is visible.
        stable: (P,) (prototype, image) pairs whose parts-inside vector survived the perturbation.
        pairs: (P,) (prototype, image) pairs seen (images of the prototype's class).
        half_size: The box half side used.
        keypoints: The keypoint convention used (see :func:`parts_in_boxes`).
    """

    inside: Tensor
    visible: Tensor
    stable: Tensor
    pairs: Tensor
    half_size: int
    keypoints: str = "float"


def scan_parts(
    model: nn.Module,
    dataset: Dataset,
    *,
    perturb: Callable[[Tensor], Tensor] | None = None,
    half_size: int | None = None,
    keypoints: str = "float",
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
) -> dict[str, PartCounts]:
    """One pass over the dataset counting parts inside each own-class prototype's peak box.

    Per batch: one forward (two with ``perturb``); the (image, prototype) pairs where the
    prototype belongs to the image's class are gathered into one (N, h, w) stack, upsampled,
    boxed and tested against all K parts at once.

    Args:
        model: A prototype model (``prototype_class``, ``num_classes`` and the maps of
            :func:`prototype_maps`).
        dataset: Items with ``image``, ``label``, ``parts`` and ``parts_visible`` (per view).
        perturb: Maps a batch of images to perturbed images; enables the ``stable`` counts.
        half_size: Box half side in pixels; None scales 36 px at 224 px to the input height.
        keypoints: ``"float"`` or ``"truncate"`` (the reference code's integer keypoints; see
            :func:`parts_in_boxes`).
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.
        num_workers: DataLoader worker processes loading the items (0: in this process); the
            order of the items, and so the noise, is the same for any count.

    Returns:
        ``{view: PartCounts}``.
    """
    check_keypoints(keypoints)
    check_whole("half_size", half_size, allow_none=True)
    check_whole("batch_size", batch_size)
    check_whole("num_workers", num_workers, minimum=0)
    check_dataset_fits(model, dataset)
    device = torch.device(device) if device is not None else model_device(model)
    prototype_class = model.prototype_class.to(device)  # (P,)
    num_prototypes = prototype_class.numel()
    counts: dict[str, PartCounts] = {}
    with torch.inference_mode():
        for batch in iterate_batches(dataset, batch_size, device, num_workers):
            b_idx, p_idx = own_prototypes(model, batch).nonzero(as_tuple=True)  # (N,) each: own-class pairs
            views = family_of(model).image_views(batch)
            clean = prototype_maps(model, batch)
            noisy = prototype_maps(model, batch, perturb) if perturb is not None else None
            for view, maps in clean.items():
                items = views[view]
                if "parts" not in items or "parts_visible" not in items:
                    raise ValueError("consistency and stability need items with 'parts' and 'parts_visible'")
                size = tuple(items["image"].shape[-2:])
                parts = items["parts"][b_idx].float()  # (N, K, 2)
                visible = items["parts_visible"][b_idx].bool()  # (N, K)
                if view not in counts:
                    k = parts.shape[1]
                    zeros = torch.zeros(num_prototypes, k, device=device)
                    half = box_half_size(size[0], half_size)
                    counts[view] = PartCounts(
                        zeros, zeros.clone(), zeros[:, 0].clone(), zeros[:, 0].clone(), half, keypoints
                    )
                c = counts[view]
                inside = parts_inside(maps[b_idx, p_idx], parts, visible, size, c.half_size, keypoints)  # (N, K)
                c.inside.index_add_(0, p_idx, inside.float())
                c.visible.index_add_(0, p_idx, visible.float())
                c.pairs.index_add_(0, p_idx, torch.ones_like(p_idx, dtype=torch.float))
                if noisy is not None:
                    moved = parts_inside(noisy[view][b_idx, p_idx], parts, visible, size, c.half_size, keypoints)
                    c.stable.index_add_(0, p_idx, (moved == inside).all(dim=1).float())
    if not counts:
        raise ValueError("the dataset is empty")
    return counts
