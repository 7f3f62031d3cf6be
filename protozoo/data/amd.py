"""AMD fundus photographs in the ADAM / iChallenge-AMD layout, with lesion masks."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from protozoo.data.folder import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    Item,
    ItemDataset,
    OnError,
    Transform,
    check_label,
    read_image,
    require,
)
from protozoo.lesions import ADAM_FOLDERS
from protozoo.pretrained import adapt_image_channels

CLASSES = ["non-AMD", "AMD"]
LESIONS = tuple(ADAM_FOLDERS)  # protozoo names (protozoo.lesions), read from ADAM's Lesion_Masks/<folder>
SPLIT_DIRS = {"train": "Training400", "val": "Validation400", "test": "Test400"}
LAYOUT = (
    "PATH/[Training400/]{AMD/A*.jpg, Non-AMD/N*.jpg, Lesion_Masks/<lesion>/<image name>.bmp}; "
    "PATH/Validation400/<image> (resp. Test400) with a CSV 'ImgName,Label' in that folder or PATH "
    f"and optionally its own Lesion_Masks/; lesion folders: {', '.join(ADAM_FOLDERS.values())}"
)


def _labels_csv(folders: list[Path]) -> Path:
    """First ``*.csv`` in ``folders`` whose header has ``ImgName`` and ``Label``."""
    for folder in folders:
        for path in sorted(folder.glob("*.csv")):
            with path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if {"ImgName", "Label"} <= {h.strip() for h in header}:
                return path
    raise DatasetLayoutError(
        f"no CSV with columns ImgName,Label in {[str(f) for f in folders]}; expected layout: {LAYOUT}"
    )


class AMDFundus(ItemDataset):
    """ADAM / iChallenge-AMD fundus images (Fang et al. 2022).

    Train labels come from the folder (``AMD/`` -> 1, ``Non-AMD/`` -> 0; file names must start
    with ``A`` resp. ``N``), val / test labels from a CSV ``ImgName,Label`` (0 or 1; the released
    xlsx must be saved as CSV). Lesion masks ``Lesion_Masks/<lesion>/<image stem>.bmp`` are
    read with lesion = dark pixels (value < 128, i.e. black lesions on a white 255 background as
    released); ``lesion_value="bright"`` flips that. A missing mask file means no such lesion.

    Items: ``image`` (3, H, W), ``label``, ``mask`` (5, H, W) in :data:`LESIONS` order and
    ``lesions`` (5,) multi-hot float (lesion present) with ``masks``, ``id`` (file stem), ``path``.

    Args:
        root: ADAM folder (containing ``Training400/`` ...) or the training folder itself.
        split: ``train``, ``val`` or ``test``.
        transform: Callable over the item dict.
        image_size: Side or ``(H, W)`` every image is resized to, masks following (None: as stored).
        seed: Accepted for the common signature (the splits are the released folders).
        val_fraction: Only 0: ADAM has its own val split (``Validation400``).
        on_error: ``"raise"`` or ``"skip"`` corrupt images.
        masks: Load lesion masks (needs ``Lesion_Masks/`` in the split folder).
        lesion_value: ``"dark"`` or ``"bright"`` lesion pixels.
        labels_csv: CSV for val / test labels (default: searched, see the layout).
    """

    classes = CLASSES
    lesion_names = list(LESIONS)
    has_val_split = True
    #: The letterbox: a mammogram's or fundus photograph's whole field of view (``ItemDataset.crop_mode``).
    crop_mode = "border"

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
        masks: bool = True,
        lesion_value: Literal["dark", "bright"] = "dark",
        labels_csv: str | Path | None = None,
    ) -> None:
        super().__init__(
            split, transform=transform, image_size=image_size, seed=seed, val_fraction=val_fraction, on_error=on_error
        )
        self.root = require(Path(root), layout=LAYOUT)
        self.lesion_value = lesion_value
        folder = self.root / SPLIT_DIRS[split]
        if split == "train" and not folder.is_dir() and (self.root / "AMD").is_dir():
            folder = self.root
        self.folder = require(folder, layout=LAYOUT)
        self.samples: list[tuple[Path, int]] = []
        if split == "train":
            for name, label, prefix in (("Non-AMD", 0, "N"), ("AMD", 1, "A")):
                for path in sorted(require(folder / name, layout=LAYOUT).iterdir()):
                    if path.suffix.lower() in IMAGE_EXTENSIONS:
                        if not path.name.upper().startswith(prefix):
                            raise ValueError(f"{path} is in {name}/ but does not start with {prefix!r}")
                        self.samples.append((path, label))
        else:
            csv_path = Path(labels_csv) if labels_csv else _labels_csv([folder, self.root])
            with require(csv_path, layout=LAYOUT).open(newline="") as f:
                for n, row in enumerate(csv.DictReader(f), start=2):
                    label = check_label(int(float(row["Label"])), num_classes=2, where=f"{csv_path} line {n}")
                    self.samples.append((folder / row["ImgName"].strip(), label))
        self.mask_dir = require(folder / "Lesion_Masks", layout=LAYOUT) if masks else None
        if self.mask_dir is not None:
            present = {p.name.lower(): p for p in self.mask_dir.iterdir() if p.is_dir()}
            self.lesion_dirs = [present.get(ADAM_FOLDERS[lesion]) for lesion in LESIONS]

    def __len__(self) -> int:
        return len(self.samples)

    def _mask(self, stem: str, size: tuple[int, int]) -> torch.Tensor:
        channels = []
        for lesion_dir in self.lesion_dirs:
            path = lesion_dir / f"{stem}.bmp" if lesion_dir is not None else None
            if path is None or not path.is_file():
                channels.append(torch.zeros(size))
                continue
            gray = read_image(path).mean(0, keepdim=True)  # (1, h, w)
            if gray.shape[-2:] != size:
                gray = F.interpolate(gray[None], size=size, mode="nearest")[0]
            channels.append(((gray < 0.5) if self.lesion_value == "dark" else (gray >= 0.5)).float()[0])
        return torch.stack(channels)  # (L, H, W)

    def load(self, index: int) -> Item:
        """Loads one fundus image with its lesion masks."""
        path, label = self.samples[index]
        require(path, layout=LAYOUT)
        image = read_image(path)  # (C, H, W)
        if image.shape[0] != 3:
            image = adapt_image_channels(image, 3).clone()
        item: Item = {"image": image, "label": label, "id": path.stem, "path": str(path)}
        if self.mask_dir is not None:
            mask = self._mask(path.stem, tuple(image.shape[-2:]))  # (L, H, W)
            item["mask"] = mask
            item["lesions"] = mask.flatten(1).amax(1)  # (L,)
        return item
