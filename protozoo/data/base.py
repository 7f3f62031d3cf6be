"""The one dataset base class and its core options: split, transform, image size, seed, val carve-out, errors.

Every loader (synthetic or on disk) derives from :class:`ItemDataset` and takes the options of
:data:`CORE_OPTIONS`, so ``load_dataset(spec, split, image_size=224, seed=1, val_fraction=0.1)``
means the same for every spec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch.utils.data import Dataset

from protozoo.data.errors import CorruptFileError

Item = dict[str, Any]
Transform = Callable[[Item], Item]
OnError = Literal["raise", "skip"]

SPLITS = ("train", "val", "test")
#: The keyword options every dataset class takes (and ``load_dataset`` passes through).
CORE_OPTIONS = ("transform", "image_size", "seed", "val_fraction", "on_error")


def check_split(split: str) -> str:
    """Validates a split name (``train``, ``val`` or ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def assign_split(key: str, *, seed: int, ratios: Sequence[float]) -> str:
    """Deterministically assigns ``key`` to ``train`` / ``val`` / ``test``.

    The assignment hashes ``f"{seed}/{key}"`` (md5), so it is stable across runs, machines
    and additions to the dataset, and items sharing a key (e.g. a patient) share a split.

    Args:
        key: Stable identifier (relative path, image id, patient id).
        seed: Changes the assignment.
        ratios: (train, val, test) fractions summing to 1.
    """
    u = int(hashlib.md5(f"{seed}/{key}".encode()).hexdigest()[:8], 16) / 2**32
    train, val = ratios[0], ratios[0] + ratios[1]
    return "train" if u < train else "val" if u < val else "test"


def official_split(key: str, *, split: str, official: str, seed: int, val_fraction: float) -> bool:
    """Whether an item of an official ``train`` / ``test`` split belongs to ``split``.

    Datasets with only a train/test split carve ``val`` out of ``train`` when
    ``val_fraction > 0`` (hashing ``key``; see :func:`assign_split`).

    Args:
        key: Stable identifier; group key (e.g. patient) to keep groups together.
        split: Requested split.
        official: The item's official split, ``train`` or ``test``.
        seed: Seed of the val carve-out.
        val_fraction: Fraction of ``train`` that becomes ``val``.
    """
    if split == "val" and val_fraction <= 0:
        raise ValueError("this dataset has no official val split; pass val_fraction > 0 to carve one from train")
    if official == "test":
        return split == "test"
    if split == "test":
        return False
    carved = assign_split(key, seed=seed, ratios=(1 - val_fraction, val_fraction, 0.0))
    return carved == split


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``image_size`` as ``(H, W)``: an int is a square side."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = (int(v) for v in image_size)
    return height, width


class ItemDataset(Dataset):
    """Base class of every dataset: the core options, error policy, resizing and the transform.

    Subclasses set ``classes``, implement ``__len__`` and :meth:`load` (item ``index`` as read or
    generated, before resizing and the transform), and set ``has_val_split`` when their layout has
    its own val split.

    An item comes out of ``dataset[i]`` as: :meth:`load`, then resized to ``image_size`` when its
    image has another size (every view of a breast; ``mask`` nearest, ``parts`` moved, by the
    same resized crop as :func:`protozoo.data.build_transforms`), then ``transform``. A dataset
    that generates its images at ``image_size`` (the synthetic ones) is never resampled.

    With ``on_error="skip"`` an item whose file is corrupt is replaced by the next readable
    item (index + 1, wrapping); ``skipped`` counts the replacements and ``skipped_paths``
    lists the bad files. The counter is per process (each DataLoader worker keeps its own).

    Args:
        split: ``train``, ``val`` or ``test``.
        transform: Callable over the item dict, applied last.
        image_size: Side (int) or ``(H, W)`` of the returned images; None keeps each file's size
            (the synthetic datasets generate at this size instead).
        seed: Seed of the dataset's random choices (hashed splits, the val carve-out, generation).
        val_fraction: For layouts with only train / test: the fraction of train carved out as a
            seeded ``val`` (hashing a stable key, see :func:`official_split`). A layout with its
            own val split takes only 0.
        on_error: ``"raise"`` or ``"skip"`` corrupt files.

    Attributes:
        classes: Class names, index = label.
        skipped: Number of corrupt items skipped so far.
        skipped_paths: Paths of those items.
    """

    classes: list[str]
    #: Whether the on-disk layout (or the generator) has its own val split.
    has_val_split: bool = False
    #: How a model should fit these images to its input (timm's ``crop_mode``, see
    #: :data:`protozoo.data.transforms.CROP_MODES`): ``"border"`` (the letterbox, whole field of
    #: view) for mammograms and fundus photographs, whose edges hold findings; ``"center"`` else.
    #: ``prepare_run`` trains with it and records it in the model's ``pretrained_cfg``; the
    #: dataset's own ``image_size`` resize letterboxes too when it is ``"border"``.
    crop_mode: str = "center"

    def __init__(
        self,
        split: str = "train",
        *,
        transform: Transform | None = None,
        image_size: int | Sequence[int] | None = None,
        seed: int = 0,
        val_fraction: float = 0.0,
        on_error: OnError = "raise",
    ) -> None:
        name = type(self).__name__
        self.split = check_split(split)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if val_fraction > 0 and self.has_val_split:
            raise ValueError(
                f"{name} has its own val split; val_fraction={val_fraction} carves one only from datasets "
                "with just train / test (leave it at 0)"
            )
        if split == "val" and not self.has_val_split and val_fraction <= 0:
            raise ValueError(
                f"{name} has no val split in its layout; pass val_fraction > 0 (e.g. 0.1) to carve a seeded one "
                "from train"
            )
        if image_size is not None and min(image_hw(image_size)) < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.transform = transform
        self.image_size = image_size
        self.seed = seed
        self.val_fraction = float(val_fraction)
        self.on_error = on_error
        self.skipped = 0
        self.skipped_paths: list[str] = []

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def in_split(self, key: str, official: str) -> bool:
        """Whether an item with stable ``key`` and official split ``official`` belongs to this split."""
        return official_split(key, split=self.split, official=official, seed=self.seed, val_fraction=self.val_fraction)

    def load(self, index: int) -> Item:
        """Loads item ``index`` without resizing or the transform; raises CorruptFileError on a bad file."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Item:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        for offset in range(n):
            try:
                item = self.load((index + offset) % n)
            except CorruptFileError as e:
                if self.on_error == "raise":
                    raise
                self.skipped += 1
                self.skipped_paths.append(e.path)
                continue
            if self.image_size is not None:
                item = _resize(item, image_hw(self.image_size), keep_aspect=self.crop_mode == "border")
            return self.transform(item) if self.transform is not None else item
        raise CorruptFileError(type(self).__name__, "every item is unreadable")


def _resize(item: Item, size: tuple[int, int], *, keep_aspect: bool = False) -> Item:
    """The item (and each of its views) at ``size`` unless already there; images stay in [0, 1].

    ``keep_aspect``: letterboxed (whole image, black padding) instead of squashed.
    """
    if "views" in item:
        item = {
            **item,
            "views": {name: _resize(view, size, keep_aspect=keep_aspect) for name, view in item["views"].items()},
        }
    if "image" not in item or tuple(item["image"].shape[-2:]) == size:
        return item
    from protozoo.data.transforms import resize_item  # torchvision only when a file needs resampling

    item = resize_item(item, size, keep_aspect=keep_aspect)
    item["image"] = item["image"].clamp(0, 1)  # bicubic overshoot
    return item
