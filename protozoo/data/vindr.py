"""VinDr-Mammo: breast-level BI-RADS labels, finding boxes as masks, CC/MLO pairs per breast."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from protozoo.data.dicom import read_dicom
from protozoo.data.errors import bad_line
from protozoo.data.folder import (
    Item,
    ItemDataset,
    OnError,
    Transform,
    check_label,
    require,
)

LAYOUT = (
    "PATH/breast-level_annotations.csv (study_id, series_id, image_id, laterality, view_position, height, width, "
    "breast_birads, breast_density, split), PATH/finding_annotations.csv (..., finding_categories, finding_birads, "
    "xmin, ymin, xmax, ymax), PATH/images/<study_id>/<image_id>.dicom"
)
BINARY_CLASSES = ["BI-RADS 1-3", "BI-RADS 4-5"]
BIRADS_CLASSES = [f"BI-RADS {k}" for k in range(1, 6)]
_BIRADS_RE = re.compile(r"^BI-RADS\s*(\d+)$", re.IGNORECASE)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with require(path, layout=LAYOUT).open(newline="") as f:
        return list(csv.DictReader(f))


class VinDrMammo(ItemDataset):
    """VinDr-Mammo (Nguyen et al. 2023).

    Labels from ``breast_birads`` (a breast takes the highest over its views):
    ``label_mode="binary"`` (default): 1 if BI-RADS 4 or 5 (suspicious), else 0 (BI-RADS 1-3);
    ``label_mode="birads"``: BI-RADS k -> class k - 1 (5 classes). Other values raise ValueError.

    Items: with ``paired`` (default) one item per breast (study, laterality) having both views:
    ``{"views": {"cc": item, "mlo": item}, "label", "id": "<study_id>_L"}``; breasts missing a
    view are left out. Without ``paired``, one item per image: ``image`` (1, H, W), ``label``,
    ``mask`` (1, H, W) = union of the image's finding boxes (with ``masks``), ``id`` (image_id),
    ``path``. Boxes are in pixels of the DICOM; rows without a box (No Finding) add nothing.

    Args:
        root: Dataset folder.
        split: ``train`` (``split == "training"``), ``test``, or ``val`` carved from train by study.
        transform: Callable over each item (a breast's views are transformed one by one).
        image_size: Side or ``(H, W)`` every image (each view) is resized to, masks following
            (None: as stored).
        seed: Seed of the val carve-out.
        val_fraction: Fraction of train studies used as val.
        on_error: ``"raise"`` or ``"skip"`` corrupt DICOMs.
        label_mode: ``"binary"`` or ``"birads"``.
        paired: One item per breast with ``views`` (else one per image).
        masks: Build box masks from ``finding_annotations.csv``.
    """

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
        label_mode: Literal["binary", "birads"] = "binary",
        paired: bool = True,
        masks: bool = True,
    ) -> None:
        super().__init__(
            split, transform=transform, image_size=image_size, seed=seed, val_fraction=val_fraction, on_error=on_error
        )
        if label_mode not in ("binary", "birads"):
            raise ValueError(f"label_mode must be 'binary' or 'birads', got {label_mode!r}")
        self.root = require(Path(root), layout=LAYOUT)
        self.label_mode = label_mode
        self.classes = BINARY_CLASSES if label_mode == "binary" else BIRADS_CLASSES
        self.paired = paired
        self.masks = masks
        breast_csv = self.root / "breast-level_annotations.csv"
        self.rows: dict[str, dict[str, str]] = {}
        for n, row in enumerate(_read_csv(breast_csv), start=2):
            official = "test" if row["split"].strip().lower() == "test" else "train"
            if self.in_split(row["study_id"], official):
                row["label"] = str(self._label(row["breast_birads"], where=f"{breast_csv} line {n}"))
                self.rows[row["image_id"]] = row
        self.boxes: dict[str, list[tuple[float, float, float, float]]] = {}
        if masks:
            findings = self.root / "finding_annotations.csv"
            for n, row in enumerate(_read_csv(findings), start=2):
                if row["image_id"] in self.rows and row.get("xmin", "").strip():
                    try:
                        box = tuple(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
                    except (KeyError, TypeError, ValueError):
                        raise bad_line(
                            findings,
                            n,
                            ",".join(str(v) for v in row.values()),
                            "a finding with numeric xmin, ymin, xmax, ymax",
                        ) from None
                    self.boxes.setdefault(row["image_id"], []).append(box)
        views: dict[tuple[str, str], dict[str, str]] = {}
        for image_id, row in self.rows.items():
            views.setdefault((row["study_id"], row["laterality"]), {})[row["view_position"].upper()] = image_id
        if paired:
            self.keys = [(k, v["CC"], v["MLO"]) for k, v in sorted(views.items()) if "CC" in v and "MLO" in v]
        else:
            self.keys = sorted(self.rows)

    def _label(self, birads: str, *, where: str) -> int:
        match = _BIRADS_RE.match(birads.strip())
        if not match:
            raise ValueError(f"unparseable breast_birads {birads!r} in {where}")
        category = check_label(int(match.group(1)) - 1, num_classes=len(BIRADS_CLASSES), where=where) + 1
        return int(category >= 4) if self.label_mode == "binary" else category - 1

    def _load_image(self, image_id: str) -> Item:
        row = self.rows[image_id]
        path = self.root / "images" / row["study_id"] / f"{image_id}.dicom"
        require(path, layout=LAYOUT)
        image = read_dicom(path)  # (1, H, W)
        item: Item = {"image": image, "label": int(row["label"]), "id": image_id, "path": str(path)}
        if self.masks:
            mask = torch.zeros_like(image)  # (1, H, W)
            height, width = image.shape[-2:]
            for xmin, ymin, xmax, ymax in self.boxes.get(image_id, []):
                top, left = max(0, math.floor(ymin)), max(0, math.floor(xmin))
                bottom, right = min(height, math.ceil(ymax)), min(width, math.ceil(xmax))
                mask[:, top:bottom, left:right] = 1.0
            item["mask"] = mask
        return item

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> Item:
        """Loads one breast (``views``) or one image."""
        if not self.paired:
            return self._load_image(self.keys[index])
        (study, side), cc, mlo = self.keys[index]
        return {
            "views": {"cc": self._load_image(cc), "mlo": self._load_image(mlo)},
            "label": max(int(self.rows[cc]["label"]), int(self.rows[mlo]["label"])),
            "id": f"{study}_{side}",
        }
