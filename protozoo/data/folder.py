"""Image-folder dataset, plus the small pieces every file loader shares.

Shared pieces: the :func:`require` path check, :func:`check_label` and :func:`read_image`. The
base class, the split helpers and the errors live in :mod:`protozoo.data.base` and
:mod:`protozoo.data.errors` (re-exported here for the loaders that import them from this module).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from protozoo.data.base import Item, ItemDataset, OnError, Transform, assign_split  # the loaders import these here
from protozoo.data.dicom import read_dicom
from protozoo.data.errors import CorruptFileError, DatasetLayoutError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom")
#: Ratios (train, val, test) of the seeded split used when a folder has no split sub-folders.
FOLDER_SPLIT_RATIOS = (0.8, 0.1, 0.1)

FOLDER_LAYOUT = "PATH/<class name>/<image file> (or PATH/{train,val,test}/<class name>/<image file>)"


def require(path: Path, *, layout: str) -> Path:
    """Returns ``path`` if it exists, else raises :class:`DatasetLayoutError`.

    Args:
        path: File or folder the loader needs.
        layout: Human-readable description of the expected on-disk layout.
    """
    if not path.exists():
        raise DatasetLayoutError(f"missing {path}; expected layout: {layout}")
    return path


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


def _float_image(arr: np.ndarray, path: Path) -> torch.Tensor:
    """A float image as (1, H, W) in [0, 1]: as is when it lies in [0, 1], else min-max scaled with a
    warning that names the file (clipping would turn every value above 1 white)."""
    if not np.isfinite(arr).all():
        raise CorruptFileError(path, "the float image holds NaN or Inf pixels")
    low, high = float(arr.min()), float(arr.max())
    if low < 0 or high > 1:
        warnings.warn(
            f"{path}: float pixel values lie in [{low:g}, {high:g}], outside [0, 1]; scaled min-max to [0, 1]",
            stacklevel=3,
        )
        arr = (arr - low) / max(high - low, 1e-12)
    return torch.from_numpy(arr.copy())[None]


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
        return read_dicom(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / (65535.0 if im.mode.startswith("I;16") else float(2**31 - 1))
                return torch.from_numpy(arr.clip(0, 1))[None]  # (1, H, W)
            if im.mode == "F":
                return _float_image(np.asarray(im, dtype=np.float32), path)  # (1, H, W)
            im = im.convert("L" if im.mode in ("1", "L", "LA") else "RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise CorruptFileError(path, e) from e
    tensor = torch.from_numpy(arr.copy())
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)  # (C, H, W)


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
        image_size: Side or ``(H, W)`` every image is resized to (None: as stored).
        seed: Seed of the hashed split.
        val_fraction: Only 0: a folder has its val split (sub-folder or hashed, see ``ratios``).
        on_error: ``"raise"`` or ``"skip"`` corrupt images.
        ratios: (train, val, test) ratios of the hashed split.
    """

    has_val_split = True

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Transform | None = None,
        image_size: int | Sequence[int] | None = None,
        seed: int = 0,
        val_fraction: float = 0.0,
        on_error: OnError = "raise",
        ratios: Sequence[float] = FOLDER_SPLIT_RATIOS,
    ) -> None:
        super().__init__(
            split, transform=transform, image_size=image_size, seed=seed, val_fraction=val_fraction, on_error=on_error
        )
        self.root = require(Path(root), layout=FOLDER_LAYOUT)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"folder:{root} is a file, not a folder; expected layout: {FOLDER_LAYOUT}")
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
        empty = []
        for class_dir in class_dirs:
            if class_dir.name not in self.classes:
                raise ValueError(f"class folder {class_dir} is not a class of {self.root / 'train'}")
            label = self.classes.index(class_dir.name)
            images = [path for path in sorted(class_dir.rglob("*")) if path.suffix.lower() in IMAGE_EXTENSIONS]
            if not images:
                empty.append(str(class_dir))
            for path in images:
                rel = path.relative_to(self.root).as_posix()
                if presplit or assign_split(rel, seed=seed, ratios=ratios) == split:
                    self.samples.append((path, label))
        if empty:  # a class without images would only fail at the first push, after the epochs
            raise DatasetLayoutError(
                f"class folder(s) {empty} hold no image ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder"
            )

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
