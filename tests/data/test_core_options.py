"""Every loader takes the same core options and derives from the one base class."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch
from fixtures import make_amd, make_cbis, make_cub, make_fashion_mnist, make_image_folder  # tests/data on sys.path

from protozoo.data import load_dataset
from protozoo.data.base import CORE_OPTIONS, ItemDataset
from protozoo.data.specs import SCHEMES


def _dataset_class(scheme: str) -> type:
    module, _, name = SCHEMES[scheme].target.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_takes_the_core_options_and_the_one_base(scheme: str) -> None:
    cls = _dataset_class(scheme)
    assert issubclass(cls, ItemDataset)
    parameters = inspect.signature(cls).parameters
    for option in CORE_OPTIONS:
        assert parameters[option].kind is inspect.Parameter.KEYWORD_ONLY, (scheme, option)


def test_unknown_option_names_option_dataset_known_and_closest(tmp_path: Path) -> None:
    make_cub(tmp_path)
    with pytest.raises(
        TypeError,
        match=r"unknown option 'img_size' for dataset 'cub' \(CUB200\); known options: "
        r"transform, image_size, seed, val_fraction, on_error, crop_to_bbox; "
        r"did you mean 'image_size'\?",
    ):
        load_dataset(f"cub:{tmp_path}", "train", img_size=224)
    with pytest.raises(
        TypeError,
        match=r"unknown option 'num_sample' for dataset 'synthetic-parts'.*num_samples.*"
        r"did you mean 'num_samples'\?",
    ):
        load_dataset("synthetic-parts", "train", num_sample=4)
    with pytest.raises(TypeError, match=r"unknown option 'zzz' for dataset 'amd'.*known options: .*labels_csv$"):
        load_dataset(f"amd:{tmp_path}", "train", zzz=1)  # no close match: no hint


def test_cub_image_size_resizes_and_moves_parts(tmp_path: Path) -> None:
    make_cub(tmp_path)  # image 1: 40 x 60 with a dot at part 1 (20, 15)
    item = load_dataset(f"cub:{tmp_path}", "train", image_size=30)[0]
    assert item["image"].shape == (3, 30, 30) and 0 <= item["image"].min() and item["image"].max() <= 1
    # Pixel centres map as (p + 0.5) * scale - 0.5: x 20 -> 20.5 * 0.5 - 0.5, y 15 -> 15.5 * 0.75 - 0.5.
    assert item["parts"][0].tolist() == pytest.approx([9.75, 11.125])
    gray = item["image"].mean(0)
    y, x = divmod(int(gray.argmax()), gray.shape[1])
    assert abs(x - 9.75) <= 1 and abs(y - 11.125) <= 1  # the dot moved with its keypoint
    assert item["parts_visible"].tolist() == [True, True, False]
    # A (H, W) size, after the bounding-box crop (30 x 25): parts are shifted, then scaled.
    cropped = load_dataset(f"cub:{tmp_path}", "train", image_size=(50, 60), crop_to_bbox=True)[0]
    assert cropped["image"].shape == (3, 50, 60)
    assert cropped["parts"][0].tolist() == pytest.approx([(10 + 0.5) * 2 - 0.5, (10 + 0.5) * 2 - 0.5])


def test_image_size_means_the_same_for_synthetic_and_files(tmp_path: Path) -> None:
    make_cub(tmp_path / "cub")
    synthetic = load_dataset("synthetic-parts", "train", image_size=48, num_samples=1)[0]
    cub = load_dataset(f"cub:{tmp_path / 'cub'}", "train", image_size=48)[0]
    assert synthetic["image"].shape == cub["image"].shape == (3, 48, 48)
    make_fashion_mnist(tmp_path / "fm", n=4)
    assert load_dataset(f"fashion-mnist:{tmp_path / 'fm'}", "test", image_size=48)[0]["image"].shape == (1, 48, 48)
    make_image_folder(tmp_path / "folder")
    folder = load_dataset(f"folder:{tmp_path / 'folder'}", "train", image_size=(20, 10))
    assert folder[0]["image"].shape == (3, 20, 10)


def test_paired_mammograms_resize_every_view_and_mask(tmp_path: Path) -> None:
    make_cbis(tmp_path)  # 16 x 12 views, CC ROI rows 3..6, cols 2..5
    item = load_dataset(f"cbis-ddsm:{tmp_path}", "train", image_size=(32, 24))[0]
    cc, mlo = item["views"]["cc"], item["views"]["mlo"]
    assert cc["image"].shape == mlo["image"].shape == (1, 32, 24)
    assert cc["mask"].shape == (1, 32, 24) and set(cc["mask"].unique().tolist()) == {0.0, 1.0}
    expected = torch.zeros(1, 32, 24)
    expected[:, 6:14, 4:12] = 1  # the 4 x 4 ROI, exactly doubled by nearest resizing
    assert torch.equal(cc["mask"], expected)


def test_amd_image_size_resizes_lesion_masks(tmp_path: Path) -> None:
    make_amd(tmp_path)  # 12 x 16, drusen at rows 3..5, cols 4..7 of A0001
    amd = load_dataset(f"amd:{tmp_path}", "train", image_size=(24, 32))[1]
    assert amd["image"].shape == (3, 24, 32) and amd["mask"].shape == (5, 24, 32)
    assert amd["mask"][0].sum() == 4 * 12 and amd["mask"][0, 6:12, 8:16].all()
    assert amd["lesions"].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_image_size_none_keeps_files_and_synthetic_is_generated_not_resampled(tmp_path: Path) -> None:
    make_cub(tmp_path)
    assert load_dataset(f"cub:{tmp_path}", "train")[0]["image"].shape == (3, 40, 60)
    ds = load_dataset("synthetic-mammo", "train", image_size=40, num_samples=1)
    assert torch.equal(ds[0]["image"], ds.generate(0)["image"])  # generated at the size, never resized


def test_val_fraction_carves_a_seeded_val_from_train(tmp_path: Path) -> None:
    make_fashion_mnist(tmp_path, n=40)
    full = {item["id"] for item in load_dataset(f"fashion-mnist:{tmp_path}", "train")}
    parts = {}
    for seed in (0, 1):
        train = {item["id"] for item in load_dataset(f"fashion-mnist:{tmp_path}", "train", val_fraction=0.3, seed=seed)}
        val = {item["id"] for item in load_dataset(f"fashion-mnist:{tmp_path}", "val", val_fraction=0.3, seed=seed)}
        assert train.isdisjoint(val) and train | val == full and 0 < len(val) < len(full)
        again = {item["id"] for item in load_dataset(f"fashion-mnist:{tmp_path}", "val", val_fraction=0.3, seed=seed)}
        assert again == val
        parts[seed] = val
    assert parts[0] != parts[1]  # the seed changes the carve-out
    with pytest.raises(ValueError, match=r"FashionMNIST has no val split in its layout; pass val_fraction > 0"):
        load_dataset(f"fashion-mnist:{tmp_path}", "val")


@pytest.mark.parametrize("spec", ["synthetic-mammo", "amd", "folder"])
def test_val_fraction_on_a_layout_with_its_own_val_split_is_an_error(tmp_path: Path, spec: str) -> None:
    make_amd(tmp_path / "amd")
    make_image_folder(tmp_path / "folder")
    path = {"amd": f"amd:{tmp_path / 'amd'}", "folder": f"folder:{tmp_path / 'folder'}"}.get(spec, spec)
    with pytest.raises(ValueError, match=r"has its own val split; val_fraction=0.2"):
        load_dataset(path, "train", val_fraction=0.2)


def test_on_error_is_checked_everywhere(tmp_path: Path) -> None:
    assert load_dataset("synthetic-fundus", "train", image_size=32, num_samples=1, on_error="skip")[0][
        "image"
    ].shape == (3, 32, 32)
    make_cub(tmp_path)
    for spec in ("synthetic-parts", f"cub:{tmp_path}"):
        with pytest.raises(ValueError, match=r"on_error must be 'raise' or 'skip', got 'ignore'"):
            load_dataset(spec, "train", on_error="ignore")
