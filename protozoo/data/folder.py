"""Image-folder dataset, plus the small pieces every real loader shares.

Shared pieces: :class:`DatasetLayoutError` / :class:`CorruptFileError`, the
:func:`require` path check, :func:`read_image`, the deterministic
:func:`assign_split` and the :class:`ItemDataset` base class (error policy,
``skipped`` counter, transform application).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

Item = dict[str, Any]
Transform = Callable[[Item], Item]
OnError = Literal["raise", "skip"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom")
SPLITS = ("train", "val", "test")
#: Ratios (train, val, test) of the seeded split used when a folder has no split sub-folders.
FOLDER_SPLIT_RATIOS = (0.8, 0.1, 0.1)

FOLDER_LAYOUT = "PATH/<class name>/<image file> (or PATH/{train,val,test}/<class name>/<image file>)"


class DatasetLayoutError(FileNotFoundError):
    """A file or folder a loader needs is missing; the message names it and the expected layout."""


class CorruptFileError(ValueError):
    """A file exists but cannot be decoded; the message names the file.

    Attributes:
        path: The unreadable file.
    """

    def __init__(self, path: str | Path, reason: object) -> None:
        self.path = str(path)
        super().__init__(f"cannot decode {path}: {reason}")


def require(path: Path, *, layout: str) -> Path:
    """Returns ``path`` if it exists, else raises :class:`DatasetLayoutError`.

    Args:
        path: File or folder the loader needs.
        layout: Human-readable description of the expected on-disk layout.
    """
    if not path.exists():
        raise DatasetLayoutError(f"missing {path}; expected layout: {layout}")
    return path


def check_split(split: str) -> str:
    """Validates a split name (``train``, ``val`` or ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def check_label(label: int, *, num_classes: int, where: str) -> int:
    """Raises ValueError when ``label`` is outside ``[0, num_classes)``.

    Args:
        label: Integer class index.
        num_classes: Number of classes.
        where: Where the label was read (file, row), for the message.
    """
    if not 0 <= label < num_classes:
        raise ValueError(f"label {label} outside [0, {num_classes}) in {where}")
    return label


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


def read_image(path: str | Path) -> torch.Tensor:
    """Reads an image file as a float32 tensor in [0, 1].

    Grayscale files (PIL modes ``1``, ``L``, ``I;16``, ``I``, ``F``) give one channel, everything
    else is converted to RGB. DICOM files (``.dcm`` / ``.dicom``) go through
    :func:`protozoo.data.dicom.read_dicom`.

    Args:
        path: Image file.

    Returns:
        (C, H, W) float32 tensor.

    Raises:
        FileNotFoundError: The file does not exist.
        CorruptFileError: The file cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} not found")
    if path.suffix.lower() in (".dcm", ".dicom"):
        from protozoo.data.dicom import read_dicom

        return read_dicom(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / (65535.0 if im.mode.startswith("I;16") else float(2**31 - 1))
                return torch.from_numpy(arr.clip(0, 1))[None]  # (1, H, W)
            if im.mode == "F":
                return torch.from_numpy(np.asarray(im, dtype=np.float32).clip(0, 1))[None]  # (1, H, W)
            im = im.convert("L" if im.mode in ("1", "L", "LA") else "RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise CorruptFileError(path, e) from e
    tensor = torch.from_numpy(arr.copy())
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)  # (C, H, W)


class ItemDataset(Dataset):
    """Base class: error policy, ``skipped`` counter and transform application.

    Subclasses implement ``__len__``, :meth:`load` and set ``classes``.

    With ``on_error="skip"`` an item whose file is corrupt is replaced by the next readable
    item (index + 1, wrapping); ``skipped`` counts the replacements and ``skipped_paths``
    lists the bad files. The counter is per process (each DataLoader worker keeps its own).

    Attributes:
        classes: Class names, index = label.
        transform: Callable over the item dict, or None.
        on_error: ``"raise"`` or ``"skip"``.
        skipped: Number of corrupt items skipped so far.
        skipped_paths: Paths of those items.
    """

    classes: list[str]

    def __init__(self, *, transform: Transform | None, on_error: OnError) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.transform = transform
        self.on_error = on_error
        self.skipped = 0
        self.skipped_paths: list[str] = []

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def load(self, index: int) -> Item:
        """Loads item ``index`` without the transform; raises CorruptFileError on a bad file."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Item:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        for offset in range(len(self)):
            try:
                item = self.load((index + offset) % len(self))
            except CorruptFileError as e:
                if self.on_error == "raise":
                    raise
                self.skipped += 1
                self.skipped_paths.append(e.path)
                continue
            return self.transform(item) if self.transform is not None else item
        raise CorruptFileError(type(self).__name__, "every item is unreadable")


class ImageFolder(ItemDataset):
    """Class-per-sub-folder image dataset, like torchvision's ``ImageFolder``.

    Layout: ``PATH/<class>/<image>``; if ``PATH/train`` exists the splits are read from
    ``PATH/{train,val,test}/<class>/<image>``, otherwise files are split deterministically by
    hashing their relative path (:func:`assign_split`, ratios :data:`FOLDER_SPLIT_RATIOS`).
    Classes are the sorted sub-folder names. Images are read by :func:`read_image`.

    Args:
        root: Dataset folder.
        split: ``train``, ``val`` or ``test``.
        transform: Callable over the item dict.
        seed: Seed of the hashed split.
        ratios: (train, val, test) ratios of the hashed split.
        on_error: ``"raise"`` or ``"skip"`` corrupt images.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Transform | None = None,
        seed: int = 0,
        ratios: Sequence[float] = FOLDER_SPLIT_RATIOS,
        on_error: OnError = "raise",
    ) -> None:
        super().__init__(transform=transform, on_error=on_error)
        self.root = require(Path(root), layout=FOLDER_LAYOUT)
        self.split = check_split(split)
        presplit = (self.root / "train").is_dir()
        base = require(self.root / split, layout=FOLDER_LAYOUT) if presplit else self.root
        class_dirs = sorted(p for p in base.iterdir() if p.is_dir())
        if presplit:
            # Class list from train so labels agree across splits.
            self.classes = sorted(p.name for p in (self.root / "train").iterdir() if p.is_dir())
        else:
            self.classes = [p.name for p in class_dirs]
        if not self.classes:
            raise DatasetLayoutError(f"no class sub-folders in {base}; expected layout: {FOLDER_LAYOUT}")
        self.samples: list[tuple[Path, int]] = []
        for class_dir in class_dirs:
            if class_dir.name not in self.classes:
                raise ValueError(f"class folder {class_dir} is not a class of {self.root / 'train'}")
            label = self.classes.index(class_dir.name)
            for path in sorted(class_dir.rglob("*")):
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                rel = path.relative_to(self.root).as_posix()
                if presplit or assign_split(rel, seed=seed, ratios=ratios) == split:
                    self.samples.append((path, label))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Item:
        """Loads one image with its label, id (relative path) and path."""
        path, label = self.samples[index]
        return {
            "image": read_image(path),  # (C, H, W)
            "label": label,
            "id": path.relative_to(self.root).as_posix(),
            "path": str(path),
        }
