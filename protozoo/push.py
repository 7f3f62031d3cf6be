"""Prototype push (projection, Chen et al. 2019): each prototype becomes its nearest training patch.

    result = push_prototypes(model, loader, unique_source="global")
    model.provenance[0]["image_id"], result.distances

One pass over the data under ``torch.no_grad``. Per prototype only the k best source images seen so
far are kept (k = 1 for a plain push), as (P, k) tensors merged with each batch by vectorised sorts,
with the latent maps of the images they refer to (at most P * k, twice that between compactions),
so memory does not grow with the dataset. Under ``torch.distributed`` each process streams its shard
and the shards' candidates are merged by the same function that merges a batch, so every process
selects exactly what one process would (see :func:`push_prototypes`).

Boxes are half-open pixel boxes ``[x0, y0, x1, y1]`` of the input: ``image[..., y0:y1, x0:x1]``.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from protozoo._push_select import CODE, FLAT, LABEL, ORDER, Candidates, assign, id_code, merge
from protozoo.boxes import high_activation_boxes, mask_boxes, percentile, span_boxes
from protozoo.family import family_of
from protozoo.models._base import ProtoModel
from protozoo.receptive_field import receptive_field_boxes  # probed once per architecture and input size

__all__ = [
    "UNIQUE_SOURCES",
    "PushResult",
    "high_activation_boxes",
    "mask_boxes",
    "percentile",
    "push_prototypes",
    "span_boxes",
]

UNIQUE_SOURCES = ("none", "per_class", "global")
BOX_MAPS = ("pushed", "before")


@dataclass
class PushResult:
    """What a push did.

    Attributes:
        provenance: One JSON-able dict per prototype, in prototype order (also ``model.provenance``).
        distances: (P,) distance from each prototype before the push to the patch that replaced it.
        changed: (P,) True where the prototype vector changed.
    """

    provenance: list[dict[str, Any]]
    distances: Tensor
    changed: Tensor


def push_prototypes(
    model: ProtoModel,
    loader: Iterable[dict[str, Any]],
    *,
    class_specific: bool = True,
    unique_source: str = "none",
    device: torch.device | str | None = None,
    progress: bool = False,
    box_map: str = "pushed",
    foreground: bool = False,
    lesions: bool = False,
) -> PushResult:
    """Replace every prototype by its nearest latent patch of the data, and record where it came from.

    Selection. For each (prototype, image) pair the image's best patch is the one at minimum
    distance (ties: smallest flat index ``h * W + w``). With ``unique_source="none"`` each
    prototype takes its best pair (ties: earliest image). Otherwise each prototype keeps its k best
    images (k = prototypes per class for ``"per_class"``, and for ``"global"`` with
    ``class_specific``, where classes never share images; P for ``"global"`` otherwise), then all
    pairs are assigned greedily in ascending (distance, prototype index, image order), skipping a
    pair whose prototype is assigned or whose image is used (by a prototype of the same class for
    ``"per_class"``, by any for ``"global"``). A prototype left over because its class has fewer
    images than prototypes takes its nearest patch anyway, with ``"reused_source": true`` and a
    warning. Images are told apart by ``id``: a repeated id counts as one image.

    Distributed. Under ``torch.distributed`` each process streams its shard; image order (the
    tie-break) is ``local position * world_size + rank``, the dataset order of a
    ``DistributedSampler(shuffle=False)``. The candidates are all-gathered and merged as one process
    merges its batches, so all processes set the same prototypes, equal to a single-process push.

    Provenance rows hold ``prototype``, ``class``, ``image_id``, ``path``, ``label``, ``distance``,
    ``feature_hw`` [h, w], ``feature_size`` [H, W], ``receptive_field_box`` (the bounding box of the
    input pixels with a nonzero gradient of the latent cell, on a fixed random probe image: the
    pixels that cell actually depends on; the whole image if none), ``high_activation_box`` (the
    box of the pixels at or above the 95th percentile of the self-similarity map upsampled
    bicubically to the input size, as ProtoPNet crops), ``self_similarity_map`` (H x W similarity of
    the new prototype on its source image, 5 decimals) and ``reused_source``.

    Args:
        model: A ProtoPNet-family model; its prototypes are overwritten in place and
            ``model.provenance`` is set. Its training mode is restored afterwards.
        loader: Batches of the model's family (:mod:`protozoo.family`): each of the family's
            views of a batch holds ``image`` (B, C, H, W), ``id`` (B stable string ids), optionally
            ``path``, and the family's labels (``label`` (B,); the lesion head's ``lesions`` (B, L)
            multi-hot, where a prototype of lesion l may come from any image with l present;
            provenance ``label`` is then -1). A multi-view breast's views are images of their own
            (ids ``"<breast>/cc"``, ``"<breast>/mlo"``). One image size throughout.
        class_specific: Take each prototype's patch from images of its own class only.
        unique_source: ``"none"``, ``"per_class"`` or ``"global"`` (see above).
        device: Where to run (default: the model's device); the model is moved there.
        progress: Show a progress bar.
        box_map: Which map gives ``high_activation_box`` and ``self_similarity_map``:
            ``"pushed"`` (default), the similarity map of the pushed prototype on its source image,
            so the box is that of the prototype the model now holds; ``"before"``, the map of the
            prototype before the push on the same image, as ProtoPNet's reference push saves it
            (its ``proto_dist_`` is computed before the prototypes are replaced). The pushed
            prototype's map peaks exactly at its source cell; the other need not.
        foreground: Take patches only from foreground cells (at least half of the cell's pixels
            foreground): the view's ``foreground`` mask, else the automatic rule of
            :mod:`protozoo.foreground` (Otsu, largest component). No prototype is then background.
        lesions: Where the data has lesion masks (``mask``), take the patches of a lesion-bearing
            image only from its lesion cells (:func:`protozoo.foreground.lesion_cells`): the
            prototypes of classes with findings become patches of the findings. A lesion head's
            prototypes of lesion type l take only the cells of l's own mask.

    Returns:
        A :class:`PushResult`.

    Raises:
        ValueError: Unknown ``unique_source``, no images, changing image sizes, or (class-specific)
            a class without any image.
    """
    if unique_source not in UNIQUE_SOURCES:
        raise ValueError(f"unknown unique_source {unique_source!r}; choose one of {', '.join(UNIQUE_SOURCES)}")
    if box_map not in BOX_MAPS:
        raise ValueError(f"unknown box_map {box_map!r}; choose one of {', '.join(BOX_MAPS)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    prototype_class = model.prototype_class.to(device)  # (P,)
    k = _candidates_per_prototype(prototype_class, unique_source, class_specific)
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            local = _stream(
                model,
                loader,
                k=k,
                class_specific=class_specific,
                progress=progress,
                foreground=foreground,
                lesions=lesions,
            )
            candidates = merge([shard.to(device) for shard in _gather(local)], k)
        group = None if unique_source == "none" else prototype_class.cpu()
        if unique_source == "global":
            group = torch.zeros_like(group)
        choice = assign(candidates, group)
        reused = _fall_back(model, choice, candidates, prototype_class.cpu(), unique_source, class_specific)
        return _apply(model, candidates, choice, reused, box_map)
    finally:
        model.train(was_training)


def _candidates_per_prototype(prototype_class: Tensor, unique_source: str, class_specific: bool) -> int:
    """k, the images to keep per prototype: the largest number of prototypes competing for an image."""
    if unique_source == "none":
        return 1
    if unique_source == "global" and not class_specific:
        return len(prototype_class)
    return int(prototype_class.bincount().max())


def _rank_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _stream(
    model: ProtoModel,
    loader: Iterable[dict[str, Any]],
    *,
    k: int,
    class_specific: bool,
    progress: bool,
    foreground: bool = False,
    lesions: bool = False,
) -> Candidates | None:
    """One pass over this process's data -> its k best candidates per prototype (None if no data)."""
    rank, world = _rank_world()
    device = model.prototypes.device
    prototype_class = model.prototype_class.to(device)
    # Prototype classes are the model's classes, or e.g. the lesion types of a lesion head.
    members = _class_members(prototype_class, int(prototype_class.max()) + 1) if class_specific else None
    candidates, seen = None, 0
    family = family_of(model)
    labels_of = family.resolved("labels")
    for batch in tqdm(loader, desc="push", disable=not progress):
        for view in family.image_views(batch).values():
            x = view["image"].to(device)
            z = model.latent(x)  # (B, D, H, W)
            ids = [str(i) for i in (view["id"].tolist() if isinstance(view["id"], Tensor) else view["id"])]
            paths = view.get("path") or [None] * len(ids)
            order = [(seen + i) * world + rank for i in range(len(ids))]
            seen += len(ids)
            labels = torch.as_tensor(labels_of(view), device=device)  # (B,) or multi-hot (B, C)
            cells = None
            if foreground:
                from protozoo.foreground import batch_foreground_cells

                cells = batch_foreground_cells(view, tuple(z.shape[2:])).to(device)  # (B, H, W)
            own = model.foreground_cells(x, z.shape)  # a foreground_only model matches only there
            if own is not None:
                cells = own if cells is None else cells & own
            if lesions:
                from protozoo.foreground import lesion_cells

                # prototypes of lesion types (a lesion head) take the cells of their own type
                per_type = family.prototype_kind == "lesion"
                found = lesion_cells(view, tuple(z.shape[2:]), per_type=per_type)
                if found is not None:
                    found = found.to(device)
                    if found.ndim == 4:  # (B, L, h, w) -> (B, P, h, w): each prototype its type's cells
                        found = found[:, prototype_class]
                        cells = found if cells is None else cells[:, None] & found
                    else:
                        cells = found if cells is None else cells & found
            fresh = _batch_candidates(model, z, labels, ids, paths, order, members, k, cells)
            fresh.input_size = tuple(x.shape[2:])
            if candidates is None:
                candidates = Candidates.empty(model.num_prototypes, k, device)
                candidates.feature_size, candidates.input_size = fresh.feature_size, fresh.input_size
            candidates = merge([candidates, fresh], k)
    return candidates


def _class_members(prototype_class: Tensor, num_classes: int) -> Tensor:
    """(K, m) indices of each class's prototypes, padded with -1 (m: the most prototypes of a class)."""
    by_class = prototype_class.argsort(stable=True)  # (P,) prototype indices grouped by class, ascending
    counts = prototype_class.bincount(minlength=num_classes)  # (K,)
    cls = prototype_class[by_class]
    slot = torch.arange(len(cls), device=cls.device) - (counts.cumsum(0) - counts)[cls]  # rank within its class
    table = torch.full((num_classes, int(counts.max())), -1, device=prototype_class.device)
    table[cls, slot] = by_class
    return table


def _batch_candidates(
    model: ProtoModel,
    z: Tensor,
    labels: Tensor,
    ids: list[str],
    paths: list[str | None],
    order: list[int],
    members: Tensor | None,
    k: int,
    cells: Tensor | None = None,
) -> Candidates:
    """The (prototype, image) pairs of a batch as (P, B) candidates, the batch's latents as the pool;
    for k = 1 only each prototype's nearest image, (P, 1) (the first: images come in stream order).

    With ``members`` (the :func:`_class_members` table, class-specific push) only the pairs of an
    image and its own class's prototypes are reduced; the others get inf distance. With ``cells``
    ((B, H, W) bool, the foreground; or (B, P, H, W), each prototype's own) only those cells are
    candidates.
    """
    d = model.head.distance_maps(z).flatten(2)  # (B, P, H*W)
    if cells is not None:  # (B, H, W) for every prototype, or (B, P, H, W) per prototype
        allowed = cells.flatten(2) if cells.ndim == 4 else cells.flatten(1)[:, None, :]
        d = d.masked_fill(~allowed, float("inf"))
    if members is not None and labels.ndim == 2:  # multi-hot: class c's prototypes see images with c present
        flat = d.argmin(dim=2)  # (B, P)
        allowed = labels[:, model.prototype_class.to(labels.device)] > 0  # (B, P)
        distance = d.gather(2, flat[..., None])[..., 0].masked_fill(~allowed, float("inf"))
        labels = torch.full((len(labels),), -1, dtype=torch.long, device=labels.device)  # no single label
    elif members is None:
        flat = d.argmin(dim=2)  # (B, P), the first minimum: smallest flat index on ties
        distance = d.gather(2, flat[..., None])[..., 0]  # (B, P)
    else:
        distance, flat = _own_class_minima(d, labels, members)
    distance, flat = distance.T, flat.T  # (P, B)
    columns = distance.argmin(dim=1, keepdim=True) if k == 1 else torch.arange(len(ids), device=z.device)
    columns = columns.expand(len(distance), -1)  # (P, B or 1): the images kept
    codes = [id_code(i) for i in ids]
    per_image = torch.tensor(list(zip(order, codes, labels.tolist())), device=z.device)  # (B, 3): ORDER, CODE, LABEL
    meta = torch.cat([per_image[columns], flat.gather(1, columns)[..., None]], dim=2)  # (P, B or 1, 4)
    return Candidates(
        distance=distance.gather(1, columns),  # (P, B or 1)
        meta=meta,
        pool=[(per_image[:, ORDER], z)],
        names=dict(zip(codes, zip(ids, paths))),
        feature_size=tuple(z.shape[2:]),
    )


def _own_class_minima(d: Tensor, labels: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
    """(B, P, H*W) distances -> (B, P) minima and their flat indices, inf outside each image's class."""
    b, p, cells = d.shape
    known = (labels >= 0) & (labels < len(members))  # (B,) a label without prototypes matches none
    rows = members[labels.clamp(0, len(members) - 1)].masked_fill(~known[:, None], -1)  # (B, m)
    own = d.gather(1, rows.clamp_min(0)[..., None].expand(-1, -1, cells))  # (B, m, H*W)
    own_flat = own.argmin(dim=2)  # (B, m), the first minimum: smallest flat index on ties
    own_distance = own.gather(2, own_flat[..., None])[..., 0].masked_fill(rows < 0, float("inf"))
    target = rows.masked_fill(rows < 0, p)  # padding goes to a spare column P, dropped below
    distance = d.new_full((b, p + 1), float("inf")).scatter_(1, target, own_distance)[:, :p]
    flat = own_flat.new_zeros(b, p + 1).scatter_(1, target, own_flat)[:, :p]
    return distance, flat


def _gather(local: Candidates | None) -> list[Candidates]:
    """All processes' candidates (just this one's outside ``torch.distributed``)."""
    _, world = _rank_world()
    shards = [local]
    if world > 1:
        shards = [None] * world
        torch.distributed.all_gather_object(shards, None if local is None else local.to("cpu"))
    shards = [shard for shard in shards if shard is not None]
    if not shards:
        raise ValueError("push got no images: the loader is empty")
    return shards


def _fall_back(
    model: ProtoModel,
    choice: Tensor,
    candidates: Candidates,
    prototype_class: Tensor,
    unique_source: str,
    class_specific: bool,
) -> Tensor:
    """Give prototypes that greedy assignment left over their nearest patch; warn; (P,) reused flags."""
    available = candidates.distance.isfinite().sum(dim=1).cpu()  # (P,) distinct images each could take
    missing = (available == 0).nonzero()[:, 0].tolist()
    if missing:
        family = family_of(model)
        names = [family.class_names(model)[c] for c in sorted({int(prototype_class[p]) for p in missing})]
        raise ValueError(
            f"no image of {family.prototype_kind} {names} in the push data: cannot push prototypes "
            f"{missing}; push onto data that has every {family.prototype_kind}"
        )
    reused = choice < 0
    by_class = class_specific or unique_source == "per_class"  # else one pool of images for all prototypes
    leftover: dict[int, list[int]] = defaultdict(list)  # class (or -1) -> its prototypes left over
    for p in reused.nonzero()[:, 0].tolist():
        leftover[int(prototype_class[p]) if by_class else -1].append(p)
    for cls, prototypes in leftover.items():
        images, count = int(available[prototypes].max()), int((prototype_class == cls).sum())
        if class_specific:
            what = f"class {cls} has {images} image(s) for its {count} prototypes"
        elif by_class:
            what = f"the data has {images} image(s) for the {count} prototypes of class {cls}"
        else:
            what = f"the data has {images} image(s) for {len(prototype_class)} prototypes"
        warnings.warn(
            f"push with unique_source={unique_source!r}: {what}; prototype(s) {prototypes} take their nearest "
            "patch from an image another prototype already uses (provenance 'reused_source': true)",
            stacklevel=3,
        )
    choice[reused] = 0
    return reused


def _apply(
    model: ProtoModel, candidates: Candidates, choice: Tensor, reused: Tensor, box_map: str = "pushed"
) -> PushResult:
    """Write the chosen vectors into the prototypes and build the provenance."""
    prototypes = model.head.prototypes
    chosen, (maps, source), vectors = chosen_sources(candidates, choice)
    mapped = vectors if box_map == "pushed" else prototypes.data.clone()  # (P, D): whose map gives the box
    changed = (prototypes.data != vectors).any(dim=1).cpu()
    prototypes.data.copy_(vectors)
    (h, w), (height, width) = candidates.feature_size, candidates.input_size
    self_distance = torch.cat([model.head.distance(maps[i][None], v[None]) for i, v in zip(source.tolist(), mapped)])
    # self_distance: (P, 1, H, W)
    similarity = model.head.activation(self_distance[:, 0])  # (P, H, W)
    cells = torch.stack([chosen["flat"] // w, chosen["flat"] % w], dim=1).cpu()  # (P, 2) [h, w]
    unique_cells, cell_of = cells.unique(dim=0, return_inverse=True)
    rf_boxes = receptive_field_boxes(model, unique_cells, (height, width))[cell_of]  # (P, 4)
    ha_boxes = high_activation_boxes(similarity, (height, width))  # (P, 4)
    rounded = similarity.double().round(decimals=5).tolist()  # float32 * 1e5 is exact: as Python's round(v, 5)
    columns = [model.prototype_class, chosen["code"], chosen["label"], chosen["distance"], cells, rf_boxes, ha_boxes]
    provenance = []
    for p, (cls, code, label, distance, cell, rf_box, ha_box, reuse) in enumerate(
        zip(*(c.tolist() for c in [*columns, reused]))
    ):
        image_id, path = candidates.names[code]
        provenance.append(
            {
                "prototype": p,
                "class": cls,
                "image_id": image_id,
                "path": path,
                "label": label,
                "distance": distance,
                "feature_hw": cell,
                "feature_size": [h, w],
                "receptive_field_box": rf_box,
                "high_activation_box": ha_box,
                "self_similarity_map": rounded[p],
                "reused_source": reuse,
            }
        )
    model.provenance = provenance
    return PushResult(provenance=provenance, distances=chosen["distance"].cpu(), changed=changed)


def chosen_sources(candidates: Candidates, choice: Tensor) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor], Tensor]:
    """The chosen candidates: (P,) ``distance``, ``code``, ``flat``, ``label``; the pool's (R, D, H, W)
    latent maps and (P,) the row of each prototype's source image; the (P, D) patches that become the
    prototypes."""
    rows, choice = torch.arange(len(choice), device=candidates.distance.device), choice.to(candidates.distance.device)
    meta = candidates.meta[rows, choice]  # (P, 4)
    chosen = {
        "distance": candidates.distance[rows, choice],
        **{name: meta[:, column] for name, column in (("code", CODE), ("flat", FLAT), ("label", LABEL))},
    }
    maps, source = candidates.maps_of(meta[:, ORDER])  # (R, D, H, W), (P,)
    width = maps.shape[3]
    vectors = maps[source, :, chosen["flat"] // width, chosen["flat"] % width]  # (P, D)
    return chosen, (maps, source), vectors
