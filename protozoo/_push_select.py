"""Candidate bookkeeping and selection for :func:`protozoo.push.push_prototypes`.

Per prototype, a :class:`Candidates` holds the ``k`` best source images seen so far, as (P, k)
tensors sorted by (distance, image order), plus the latent maps of the images they refer to.
Streaming a batch, merging the shards of several
processes and the final choice all go through the same two functions: :func:`best_k` (vectorised,
keeps the k best distinct images per prototype) and :func:`assign` (the choice of one candidate per
prototype). Images are identified by a 64-bit hash of their id, so duplicates (a
``DistributedSampler`` pads shards by repeating samples) count once, on every rank alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

NO_ORDER = torch.iinfo(torch.int64).max  # image order of an empty slot: after every real image


def id_code(image_id: str) -> int:
    """A stable signed 64-bit code of an image id (the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(str(image_id).encode(), digest_size=8).digest(), "little", signed=True)


ORDER, CODE, LABEL, FLAT = range(4)  # the integer columns of Candidates.meta


@dataclass
class Candidates:
    """The k best source images per prototype, and the latent maps of the images they refer to.

    Attributes:
        distance: (P, k) distance of the prototype to the image's best patch; inf = empty slot.
        meta: (P, k, 4) long columns, one tensor so that a merge moves them in one gather:
            ``ORDER`` position of the image in the (global) stream, unique per image occurrence, the
            tie-break of equal distances and the key of its latent map in the pool; ``CODE``
            :func:`id_code` of its id; ``LABEL`` its label; ``FLAT`` flat latent index h * W + w
            of its best patch.
        pool: Chunks of (orders (n,), latent maps (n, D, H, W)); maps no candidate refers to are
            dropped by :meth:`compact` once the pool has doubled, so it stays within twice the
            images referred to.
        names: id code -> (image id, path or None).
        feature_size: (H, W) of the latent maps.
        input_size: (H_in, W_in) of the images.
        compacted_rows: Pool rows after the last compaction.
    """

    distance: Tensor
    meta: Tensor
    pool: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    names: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    feature_size: tuple[int, int] | None = None
    input_size: tuple[int, int] | None = None
    compacted_rows: int = 0

    @classmethod
    def empty(cls, num_prototypes: int, k: int, device: torch.device) -> Candidates:
        """k empty slots per prototype (inf distance, last in image order)."""
        meta = torch.zeros(num_prototypes, k, 4, dtype=torch.long, device=device)
        meta[..., ORDER] = NO_ORDER
        return cls(distance=torch.full((num_prototypes, k), float("inf"), device=device), meta=meta)

    @property
    def pool_rows(self) -> int:
        return sum(len(orders) for orders, _ in self.pool)

    def compact(self) -> None:
        """Keep only the pool maps and ids that candidates refer to, as one chunk."""
        held = self.distance.isfinite()  # (P, k)
        orders, maps = (torch.cat(parts) for parts in zip(*self.pool)) if self.pool else (None, None)
        if orders is not None:
            keep = torch.isin(orders, self.meta[..., ORDER][held])  # (rows,)
            self.pool = [(orders[keep], maps[keep])]
        self.compacted_rows = self.pool_rows
        codes = set(self.meta[..., CODE][held].tolist())
        self.names = {code: name for code, name in self.names.items() if code in codes}

    def maps_of(self, orders: Tensor) -> tuple[Tensor, Tensor]:
        """(N,) image orders -> the pool's (R, D, H, W) latent maps, compacted, and (N,) the row of each."""
        self.compact()
        pool_orders, maps = self.pool[0]
        sorted_orders, perm = pool_orders.sort()
        return maps, perm[torch.searchsorted(sorted_orders, orders.contiguous())]

    def to(self, device: torch.device | str) -> Candidates:
        """A compacted copy on ``device``."""
        self.compact()
        return replace(
            self,
            distance=self.distance.to(device),
            meta=self.meta.to(device),
            pool=[(orders.to(device), maps.to(device)) for orders, maps in self.pool],
            names=dict(self.names),
        )


def lexsort(*keys: Tensor) -> Tensor:
    """Row-wise indices sorting (P, M) tensors by ``keys[0]``, then ``keys[1]``... (ascending)."""
    index = keys[-1].argsort(dim=1, stable=True)
    for key in reversed(keys[:-1]):  # stable sorts from the least significant key up
        index = index.gather(1, key.gather(1, index).argsort(dim=1, stable=True))
    return index


def best_k(distance: Tensor, meta: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
    """Per row, the k best entries by (distance, image order), one per distinct image.

    Args:
        distance: (P, M) distances (inf for nothing).
        meta: (P, M, 4) candidate columns; of several entries with one ``CODE`` only the best counts.
        k: How many to keep (M >= k).

    Returns:
        (P, k) column indices, best first, and (P, k) True where the entry repeats an image already
        kept (only when a row has fewer than k distinct images: repeats come last); None for k = 1,
        where the best entry is never a repeat.
    """
    if k == 1:  # the nearest, ties to the earliest image: no sort
        later = meta[..., ORDER].masked_fill(distance > distance.amin(dim=1, keepdim=True), NO_ORDER)
        return later.argmin(dim=1, keepdim=True), None
    ranked = lexsort(distance, meta[..., ORDER])  # (P, M), best first
    ranked_code = meta[..., CODE].gather(1, ranked)
    by_code = ranked_code.argsort(dim=1, stable=True)  # equal codes adjacent, the best of them first
    sorted_code = ranked_code.gather(1, by_code)
    later = torch.zeros_like(sorted_code, dtype=torch.bool)
    later[:, 1:] = sorted_code[:, 1:] == sorted_code[:, :-1]
    repeat = torch.empty_like(later).scatter_(1, by_code, later)  # (P, M), in ranked order
    keep = repeat.to(torch.uint8).argsort(dim=1, stable=True)[:, :k]  # firsts of each code, in rank order
    return ranked.gather(1, keep), repeat.gather(1, keep)


def merge(sources: list[Candidates], k: int) -> Candidates:
    """Candidates of several sources (held candidates and a batch, or processes) -> the k best."""
    distance = torch.cat([s.distance for s in sources], dim=1)  # (P, M)
    meta = torch.cat([s.meta for s in sources], dim=1)  # (P, M, 4)
    index, repeat = best_k(distance, meta, k)  # (P, k)
    distance, meta = distance.gather(1, index), meta.gather(1, index[..., None].expand(-1, -1, meta.shape[2]))
    if repeat is not None:
        distance = distance.masked_fill(repeat, float("inf"))
    sizes = {(s.feature_size, s.input_size) for s in sources}
    if len(sizes) > 1:
        raise ValueError(f"push needs one image size for the whole data; got (latent, input) sizes {sorted(sizes)}")
    names = sources[0].names
    for source in sources[1:]:
        names.update(source.names)
    merged = Candidates(distance, meta, [chunk for s in sources for chunk in s.pool], names, *sizes.pop())
    merged.compacted_rows = sources[0].compacted_rows
    if merged.pool_rows > 2 * max(merged.compacted_rows, 64):  # amortised: once the pool has doubled
        merged.compact()
    return merged


def assign(candidates: Candidates, group: Tensor | None) -> Tensor:
    """One candidate per prototype: the best, or greedily distinct source images within groups.

    With ``group`` None every prototype takes its best candidate (plain ProtoPNet push). Otherwise
    all (prototype, image) candidates are visited in ascending (distance, prototype index, image
    order), and a prototype takes the image unless it is already assigned or the image is already
    used by a prototype of its group. Keeping only the k best images per prototype, with k the
    largest group size, loses nothing: each of a prototype's skips is an image taken by one of the
    other k - 1 prototypes of its group, so it is assigned among its k best (when it has k images).

    Args:
        candidates: (P, k) candidates sorted best first.
        group: (P,) group of each prototype (its class for ``per_class``, all zeros for ``global``).

    Returns:
        (P,) column of the chosen candidate; -1 where greedy assignment left a prototype without an
        unused image (it has fewer distinct images than its group has prototypes).
    """
    if group is None:
        return torch.where(candidates.distance[:, 0].isfinite(), 0, -1).cpu()
    p, j = candidates.distance.isfinite().nonzero(as_tuple=True)  # (N,) every real candidate
    visit = lexsort(candidates.distance[p, j][None], p[None], candidates.meta[p, j, ORDER][None])[0]
    codes, groups = candidates.meta[..., CODE].tolist(), group.tolist()
    choice = [-1] * candidates.distance.shape[0]
    used: set[tuple[int, int]] = set()
    for proto, col in zip(p[visit].tolist(), j[visit].tolist()):
        image = (groups[proto], codes[proto][col])
        if choice[proto] < 0 and image not in used:
            choice[proto] = col
            used.add(image)
    return torch.tensor(choice, dtype=torch.long)
