"""Writers of tiny datasets in each loader's exact on-disk format (for tmp_path)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def write_idx(path: Path, array: np.ndarray, *, magic: int) -> Path:
    """Writes a uint8 array as an idx file (big-endian magic and dims); gzipped if ``.gz``."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_fashion_mnist(root: Path, *, n: int = 12, gz: bool = True, labels: np.ndarray | None = None) -> Path:
    """Writes train and t10k idx files with ``n`` random images each."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)), magic=2051)
        lab = labels if labels is not None else np.arange(n) % 10
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", lab, magic=2049)
    return root


def write_image(path: Path, array: np.ndarray) -> Path:
    """Writes a uint8 (H, W) or (H, W, 3) array as an image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def make_image_folder(root: Path, *, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 10) -> Path:
    """Writes ``root/<class>/<i>.png`` 8x8 RGB images."""
    for c in classes:
        for i in range(per_class):
            write_image(root / c / f"{i}.png", np.full((8, 8, 3), 40 * i % 256))
    return root


def dot_image(height: int, width: int, x: float, y: float, *, sigma: float = 1.5) -> np.ndarray:
    """(H, W) float image in [0, 1] with a Gaussian dot at pixel (x, y)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def make_cub(root: Path, *, parts: dict[int, tuple[float, float, int]] | None = None, label: int = 2) -> Path:
    """Writes a 2-image, 2-class CUB_200_2011 folder (3 parts; image 1 train, image 2 test).

    Image 1 is 40x60 (H x W) with a bright dot at part 1, bbox (10, 5, 30, 25); ``parts`` maps
    part id -> (x, y, visible) for image 1. ``label`` is image 2's 1-based class id.
    """
    parts = parts or {1: (20.0, 15.0, 1), 2: (50.0, 35.0, 1), 3: (0.0, 0.0, 0)}
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    (root / "images.txt").write_text("1 001.Black_footed_Albatross/a_1.jpg\n2 002.Laysan_Albatross/b_2.jpg\n")
    (root / "image_class_labels.txt").write_text(f"1 1\n2 {label}\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n")
    (root / "bounding_boxes.txt").write_text("1 10.0 5.0 30.0 25.0\n2 0.0 0.0 8.0 8.0\n")
    (root / "parts").mkdir()
    (root / "parts" / "parts.txt").write_text("1 back\n2 beak\n3 belly\n")
    lines = [f"1 {k} {x} {y} {v}" for k, (x, y, v) in parts.items()] + [f"2 {k} 0.0 0.0 0" for k in parts]
    (root / "parts" / "part_locs.txt").write_text("\n".join(lines) + "\n")
    x, y, _ = parts[1]
    dot = (255 * dot_image(40, 60, x, y)).astype(np.uint8)
    write_image(root / "images" / "001.Black_footed_Albatross" / "a_1.jpg", np.stack([dot] * 3, -1))
    write_image(root / "images" / "002.Laysan_Albatross" / "b_2.jpg", np.zeros((8, 8)))
    return root


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    window: tuple[float, float] | None = None,
    patient_id: str = "TEST",
    series_description: str = "full mammogram images",
) -> Path:
    """Writes a 16-bit single-frame grayscale DICOM (explicit VR little endian)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.SeriesDescription = series_description
    ds.Modality = "MG"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


CBIS_MASS_COLUMNS = [
    "patient_id", "breast_density", "left or right breast", "image view", "abnormality id", "abnormality type",
    "mass shape", "mass margins", "assessment", "pathology", "subtlety",
    "image file path", "cropped image file path", "ROI mask file path",
]  # fmt: skip


def make_cbis(root: Path, *, tcia_layout: bool = False, pathology2: str = "MALIGNANT") -> Path:
    """Writes a CBIS-DDSM train set: P_00001 LEFT (CC+MLO, BENIGN_WITHOUT_CALLBACK + ``pathology2``
    on MLO) and P_00002 RIGHT (CC only, BENIGN), 16x12 images with a 4x4 ROI at rows/cols 2..5.

    With ``tcia_layout`` files are at the TCIA download paths (``.../1-1.dcm``) instead of the
    CSV paths, and each ROI folder also holds a cropped image.
    """
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    specs = [
        ("P_00001", "LEFT", "CC", 1, "BENIGN_WITHOUT_CALLBACK"),
        ("P_00001", "LEFT", "MLO", 1, "BENIGN_WITHOUT_CALLBACK"),
        ("P_00001", "LEFT", "MLO", 2, pathology2),
        ("P_00002", "RIGHT", "CC", 1, "BENIGN"),
    ]
    for patient, side, view, abn, pathology in specs:
        folder = f"Mass-Training_{patient}_{side}_{view}"
        image_rel = f"{folder}/1.2.3/1.2.3.4/000000.dcm"
        roi_rel = f"{folder}_{abn}/1.2.5/1.2.5.6/000001.dcm"
        crop_rel = f"{folder}_{abn}/1.2.5/1.2.5.7/000000.dcm"
        image = np.arange(16 * 12, dtype=np.uint16).reshape(16, 12) * 100
        roi = np.zeros((16, 12), dtype=np.uint16)
        roi[2 + abn : 6 + abn, 2:6] = 255
        if tcia_layout:
            write_dicom(
                root / "CBIS-DDSM" / folder / "07-20-2016-DDSM" / "1.000000-full mammogram images-1" / "1-1.dcm",
                image,
                patient_id=folder,
            )
            roi_dir = root / "CBIS-DDSM" / f"{folder}_{abn}" / "08-29-2017-DDSM"
            write_dicom(roi_dir / "1.000000-ROI mask images-1" / "1-1.dcm", roi, series_description="ROI mask images")
            write_dicom(
                roi_dir / "1.000000-cropped images-2" / "1-1.dcm", roi[:4, :4], series_description="cropped images"
            )
        else:
            write_dicom(root / image_rel, image, patient_id=folder)
            write_dicom(root / roi_rel, roi, series_description="ROI mask images")
        rows.append(
            dict(
                zip(
                    CBIS_MASS_COLUMNS,
                    [
                        patient,
                        2,
                        side,
                        view,
                        abn,
                        "mass",
                        "OVAL",
                        "CIRCUMSCRIBED",
                        3,
                        pathology,
                        4,
                        image_rel,
                        crop_rel,
                        roi_rel + "\n",
                    ],
                )
            )  # fmt: skip
        )
    _write_csv(root / "mass_case_description_train_set.csv", rows)
    calc_cols = [
        c.replace("mass shape", "calc type").replace("mass margins", "calc distribution") for c in CBIS_MASS_COLUMNS
    ]
    calc_cols[1] = "breast density"
    (root / "calc_case_description_train_set.csv").write_text(",".join(calc_cols) + "\n")
    return root


def make_vindr(root: Path, *, birads: tuple[str, str] = ("BI-RADS 2", "BI-RADS 4")) -> Path:
    """Writes one study with both views of the left breast (``birads[0]``; a box on CC) and the
    right CC only (``birads[1]``), 20x10 images, split ``training``."""
    images = [("img_lcc", "L", "CC", birads[0]), ("img_lmlo", "L", "MLO", birads[0]), ("img_rcc", "R", "CC", birads[1])]
    breast, findings = [], []
    for image_id, side, view, br in images:
        common = {"study_id": "study1", "series_id": "s1", "image_id": image_id, "laterality": side,
                  "view_position": view, "height": 20, "width": 10, "breast_birads": br}  # fmt: skip
        breast.append({**common, "breast_density": "DENSITY C", "split": "training"})
        box = (2.0, 3.0, 6.5, 8.2) if image_id == "img_lcc" else ("", "", "", "")
        cats = "['Mass']" if image_id == "img_lcc" else "['No Finding']"
        findings.append({**common, "breast_density": "DENSITY C", "finding_categories": cats,
                         "finding_birads": "BI-RADS 4" if box[0] else "",
                         **dict(zip(("xmin", "ymin", "xmax", "ymax"), box)), "split": "training"})  # fmt: skip
        write_dicom(
            root / "images" / "study1" / f"{image_id}.dicom", np.full((20, 10), 1000), photometric="MONOCHROME1"
        )
    _write_csv(root / "breast-level_annotations.csv", breast)
    _write_csv(root / "finding_annotations.csv", findings)
    return root


def make_amd(root: Path, *, val_labels: tuple[int, int] = (1, 0)) -> Path:
    """Writes Training400 (A0001 AMD with a drusen mask, N0001 non-AMD) and Validation400 (V0001,
    V0002 with a labels CSV). Images 12x16; the drusen lesion is black (0) on white (255)."""
    train = root / "Training400"
    write_image(train / "AMD" / "A0001.jpg", np.full((12, 16, 3), 120))
    write_image(train / "Non-AMD" / "N0001.jpg", np.full((12, 16, 3), 60))
    mask = np.full((12, 16), 255)
    mask[3:6, 4:8] = 0
    write_image(train / "Lesion_Masks" / "drusen" / "A0001.bmp", mask)
    (train / "Lesion_Masks" / "exudate").mkdir()
    val = root / "Validation400"
    for name in ("V0001.jpg", "V0002.jpg"):
        write_image(val / name, np.full((12, 16, 3), 90))
    (val / "labels.csv").write_text(
        "ImgName,Label\n" + "".join(f"V000{i + 1}.jpg,{v}\n" for i, v in enumerate(val_labels))
    )
    return root


def make_cbis_breasts(root: Path, *, per_class: int = 2, shape: tuple[int, int] = (40, 32)) -> Path:
    """Writes a CBIS-DDSM train set of ``2 * per_class`` breasts, each with CC and MLO: the first
    ``per_class`` patients BENIGN, the rest MALIGNANT (one mass row per view, CSV paths as released).

    Each view is a smooth gradient with a bright square mass whose ROI mask marks it; malignant masses
    are larger, so the classes differ in the images.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    height, width = shape
    rows = []
    for n in range(2 * per_class):
        patient, pathology = f"P_{n + 1:05d}", "BENIGN" if n < per_class else "MALIGNANT"
        side = ("LEFT", "RIGHT")[n % 2]
        for view in ("CC", "MLO"):
            folder = f"Mass-Training_{patient}_{side}_{view}"
            image_rel = f"{folder}/1.2.3/1.2.3.4/000000.dcm"
            roi_rel = f"{folder}_1/1.2.5/1.2.5.6/000001.dcm"
            side_px = 6 if pathology == "BENIGN" else 12
            top, left = int(rng.integers(2, height - side_px - 2)), int(rng.integers(2, width - side_px - 2))
            image = np.add.outer(np.arange(height) * 20, np.arange(width) * 10).astype(np.uint16)
            image[top : top + side_px, left : left + side_px] = 4000
            roi = np.zeros((height, width), dtype=np.uint16)
            roi[top : top + side_px, left : left + side_px] = 255
            write_dicom(root / image_rel, image, patient_id=folder)
            write_dicom(root / roi_rel, roi, series_description="ROI mask images")
            rows.append(dict(zip(CBIS_MASS_COLUMNS, [patient, 2, side, view, 1, "mass", "OVAL", "CIRCUMSCRIBED", 3,
                                                     pathology, 4, image_rel, roi_rel, roi_rel])))  # fmt: skip
    _write_csv(root / "mass_case_description_train_set.csv", rows)
    calc_cols = [
        c.replace("mass shape", "calc type").replace("mass margins", "calc distribution") for c in CBIS_MASS_COLUMNS
    ]
    (root / "calc_case_description_train_set.csv").write_text(",".join(calc_cols) + "\n")  # no calcifications
    return root
