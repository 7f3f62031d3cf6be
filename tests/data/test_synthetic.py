"""Tests of protozoo.data.synthetic: determinism, sample convention, ground-truth rules."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from protozoo.data.synthetic import (
    FUNDUS_LESIONS,
    MAMMO_CLASSES,
    PART_NAMES,
    SyntheticFundus,
    SyntheticMammo,
    SyntheticParts,
    amd_rule,
    marker_box,
)
from protozoo.data.synthetic.parts import SLOT_PARTS

DATASETS = [SyntheticMammo, SyntheticFundus, SyntheticParts]
CHANNELS = {SyntheticMammo: 1, SyntheticFundus: 3, SyntheticParts: 3}
SIZE = 64


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.stack([xs.float().mean(), ys.float().mean()])


@pytest.mark.parametrize("cls", DATASETS)
def test_deterministic_and_splits_disjoint(cls):
    a = cls("train", image_size=SIZE, num_samples=8, seed=3)
    b = cls("train", image_size=SIZE, num_samples=8, seed=3)
    other_seed = cls("train", image_size=SIZE, num_samples=8, seed=4)
    test = cls("test", image_size=SIZE, num_samples=8, seed=3)
    for i in (0, 5):
        assert torch.equal(a[i]["image"], a[i]["image"])
        assert torch.equal(a[i]["image"], b[i]["image"])
        assert a[i]["label"] == b[i]["label"]
        assert not torch.equal(a[i]["image"], other_seed[i]["image"])
    train_ids = {a[i]["id"] for i in range(len(a))}
    assert len(train_ids) == len(a)
    assert train_ids.isdisjoint(test[i]["id"] for i in range(len(test)))
    for i in range(len(a)):
        for j in range(len(test)):
            assert not torch.equal(a[i]["image"], test[j]["image"])


@pytest.mark.parametrize("cls", DATASETS)
def test_item_convention_and_collate(cls):
    ds = cls("val", image_size=SIZE, num_samples=6)
    assert len(ds) == 6 and ds.num_classes == len(ds.classes)
    for i in range(len(ds)):
        item = ds[i]
        image = item["image"]
        assert image.shape == (CHANNELS[cls], SIZE, SIZE) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert isinstance(item["label"], int) and 0 <= item["label"] < ds.num_classes
        assert item["id"] == f"{ds.name}/val/{i:06d}"
        assert item["shortcut_box"].tolist() == [-1, -1, -1, -1] and item["shortcut_label"] == -1
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, CHANNELS[cls], SIZE, SIZE)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError):
        cls("training")


def test_mammo_masks_views_and_lesions():
    ds = SyntheticMammo("train", image_size=SIZE, num_samples=24)
    assert ds.classes == MAMMO_CLASSES
    labels = set()
    for i in range(len(ds)):
        item = ds[i]
        labels.add(item["label"])
        assert set(item["views"]) == {"cc", "mlo"}
        assert torch.equal(item["image"], item["views"]["cc"]["image"])
        assert item["views"]["mlo"]["id"] == item["id"] + "/mlo"
        for view in item["views"].values():
            assert view["mask"].shape == (1, SIZE, SIZE)
            assert bool(view["mask"].any()) == (item["label"] != 0)
        # Right breasts are mirrored: the tissue sits on the right half.
        halves = item["image"][0].split(SIZE // 2, dim=1)
        assert (halves[1].mean() > halves[0].mean()) == (item["laterality"] == "R")
        if item["label"] == 0:
            continue
        clean = ds.generate(i, lesions=False)
        assert clean["label"] == 0 and not clean["mask"].any()
        for name, view in item["views"].items():
            inside = view["mask"][0] > 0
            diff = (view["image"] - clean["views"][name]["image"])[0].abs()
            assert diff[inside].mean() > 0.03
            assert diff[inside].mean() > 3 * diff[~inside].mean()
        # CC/MLO rule: same lesion-to-nipple distance in both views.
        dist = [(_centroid(v["mask"][0] > 0) - v["nipple"]).norm() for v in item["views"].values()]
        assert abs(dist[0] - dist[1]) < 2.0
    assert labels == {0, 1, 2}


def test_fundus_lesions_masks_and_amd_rule():
    ds = SyntheticFundus("train", image_size=SIZE, num_samples=48)
    seen = torch.zeros(len(FUNDUS_LESIONS))
    labels = []
    for i in range(len(ds)):
        item = ds[i]
        lesions, mask = item["lesions"], item["mask"]
        assert mask.shape == (len(FUNDUS_LESIONS), SIZE, SIZE)
        assert torch.equal(lesions, mask.flatten(1).any(dim=1).float())
        assert item["label"] == amd_rule(lesions, item["drusen_in_macula"], ds.drusen_threshold)
        ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
        macula = (xs - item["fovea"][0]) ** 2 + (ys - item["fovea"][1]) ** 2 <= item["macula_radius"] ** 2
        assert bool((mask[0].bool() & macula).any()) == (item["drusen_in_macula"] > 0)
        if lesions.any():
            clean = ds.generate(i, lesions=False)
            assert clean["label"] == 0 and not clean["mask"].any()
            inside = mask.any(dim=0)
            diff = (item["image"] - clean["image"]).abs().sum(dim=0)
            assert diff[inside].mean() > 0.1
        seen += lesions
        labels.append(item["label"])
    assert 0.3 < sum(labels) / len(labels) < 0.7
    assert (seen >= 2).all()


def test_amd_rule():
    none = torch.zeros(len(FUNDUS_LESIONS))
    assert amd_rule(none, 4, 5) == 0 and amd_rule(none, 5, 5) == 1
    for lesion, expected in zip(FUNDUS_LESIONS, (0, 0, 0, 1, 1)):
        vector = none.clone()
        vector[FUNDUS_LESIONS.index(lesion)] = 1.0
        assert amd_rule(vector, 0, 5) == expected


def test_parts_keypoints_and_visibility():
    ds = SyntheticParts("train", image_size=SIZE, num_samples=24)
    assert len(PART_NAMES) == 15
    left, right = PART_NAMES.index("left eye"), PART_NAMES.index("right eye")
    invisible = 0
    for i in range(len(ds)):
        item = ds[i]
        parts, visible = item["parts"], item["parts_visible"]
        assert parts.shape == (15, 2) and parts.dtype == torch.float32 and visible.dtype == torch.bool
        assert ((parts[visible] >= 0) & (parts[visible] <= SIZE - 1)).all()
        out = ((parts < 0) | (parts > SIZE - 1)).any(dim=1)
        assert not (visible & out).any()
        assert not (visible[left] and visible[right])  # the far eye is hidden
        invisible += int((~visible).sum())
    assert invisible >= 2 * len(ds)


def test_parts_classes_differ_on_signature_parts_only():
    ds = SyntheticParts("test", image_size=SIZE, num_samples=8, num_classes=6)
    designs = ds.class_attributes
    assert len(designs) == 6 and all(2 <= len(d) <= 3 for d in designs)
    assert all(designs[a] != designs[b] for a in range(6) for b in range(a))
    assert SyntheticParts(num_classes=3).class_attributes == designs[:3]
    back = PART_NAMES.index("back")
    posed = [PART_NAMES.index(p) for p in PART_NAMES if p not in ("beak", "tail")]
    for i in range(4):
        renders = [ds.generate(i, label=c) for c in range(ds.num_classes)]
        x, y = renders[0]["parts"][back].round().long().clamp(0, SIZE - 1).tolist()
        for render in renders[1:]:
            assert torch.equal(render["parts"][posed], renders[0]["parts"][posed])
            assert torch.equal(render["image"][:, y, x], renders[0]["image"][:, y, x])
            assert not torch.equal(render["image"], renders[0]["image"])
    for c, parts in enumerate(ds.signature_parts):
        assert parts == [p for slot in designs[c] for p in SLOT_PARTS[slot]]


@pytest.mark.parametrize("cls", DATASETS)
def test_shortcut_marker(cls):
    train = cls("train", image_size=SIZE, num_samples=16, shortcut=1.0)
    plain = cls("train", image_size=SIZE, num_samples=16)
    test = cls("test", image_size=SIZE, num_samples=30, shortcut=1.0)
    for i in range(4):
        item = train[i]
        assert item["shortcut_label"] == item["label"]
        x0, y0, x1, y1 = item["shortcut_box"].tolist()
        assert (x0, y0, x1, y1) == marker_box(item["label"], train.num_classes, SIZE)
        assert (item["image"][:, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] == 1.0).all()
        outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
        outside[y0:y1, x0:x1] = False
        assert torch.equal(item["image"][:, outside], plain[i]["image"][:, outside])
    agree = [test[i]["shortcut_label"] == test[i]["label"] for i in range(len(test))]
    assert all(0 <= test[i]["shortcut_label"] < test.num_classes for i in range(len(test)))
    assert sum(agree) / len(agree) < 0.75


@pytest.mark.parametrize("cls", DATASETS)
def test_transform_hook(cls):
    def transform(item):
        item["image"] = item["image"].flip(-1)
        item["transformed"] = True
        return item

    ds = cls("train", image_size=SIZE, num_samples=2, transform=transform)
    item = ds[1]
    assert item["transformed"]
    assert torch.equal(item["image"], ds.generate(1)["image"].flip(-1))
