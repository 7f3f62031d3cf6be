"""Tests of resolve_data_config and build_transforms: keypoints and masks stay on the image content."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from fixtures import dot_image  # tests/data is on sys.path (pytest prepend mode, no __init__.py)

from protozoo.data import AffineAug, build_transforms, resolve_data_config


@dataclass
class PretrainedCfg:
    input_size: tuple[int, int, int] = (1, 96, 64)
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    interpolation: str = "bilinear"
    crop_pct: float = 1.0


class Model:
    pretrained_cfg = PretrainedCfg()


def test_resolve_defaults_and_sources() -> None:
    cfg = resolve_data_config()
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == (0.485, 0.456, 0.406)
    assert resolve_data_config(Model())["input_size"] == (1, 96, 64)
    assert resolve_data_config(PretrainedCfg())["std"] == (0.25,)
    assert resolve_data_config({"input_size": (3, 32, 32), "mean": (0.5,)})["mean"] == (0.5, 0.5, 0.5)
    over = resolve_data_config(Model(), input_size=(3, 64, 64), crop_pct=None)
    assert over["input_size"] == (3, 64, 64) and over["crop_pct"] == 1.0 and over["mean"] == (0.5, 0.5, 0.5)
    assert resolve_data_config(input_size=(1, 32, 32))["mean"] == pytest.approx((np.mean((0.485, 0.456, 0.406)),))
    with pytest.raises(TypeError, match="unknown data config keys"):
        resolve_data_config(img_size=3)
    # The one channel rule (protozoo.pretrained.channel_stats): unmatched statistics become their mean.
    assert resolve_data_config(input_size=(2, 8, 8))["mean"] == pytest.approx((np.mean((0.485, 0.456, 0.406)),) * 2)


def _dot_item(h: int, w: int, x: float, y: float) -> dict:
    image = torch.from_numpy(dot_image(h, w, x, y)).float()[None]  # (1, H, W)
    mask = (image > 0.2).float()  # (1, H, W) the dot's core, radius ~2.7 px
    return {
        "image": image,
        "mask": mask,
        "label": 0,
        "parts": torch.tensor([[x, y], [2.0, 2.0]]),
        "parts_visible": torch.tensor([True, False]),
    }


def _brightest(image: torch.Tensor) -> tuple[int, int]:
    gray = image.mean(0)
    y, x = divmod(int(gray.argmax()), gray.shape[1])
    return x, y


@pytest.mark.parametrize("seed", range(12))
def test_train_keypoint_and_mask_follow_the_dot(seed: int) -> None:
    cfg = resolve_data_config(input_size=(1, 64, 48), mean=(0.0,), std=(1.0,), interpolation="bilinear")
    transform = build_transforms(
        cfg, train=True, crop_scale=(0.6, 1.0), affine=AffineAug(degrees=30, translate=0.1, scale=(0.8, 1.2)),
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    out = transform(_dot_item(90, 70, x=18.3, y=24.6))  # off-centre so rotation errors show
    px, py = out["parts"][0].tolist()
    assert out["image"].shape == (1, 64, 48) and out["mask"].shape == (1, 64, 48)
    if not out["parts_visible"][0]:  # the crop cut the dot off: the keypoint must be outside
        assert not (-0.5 <= px < 47.5 and -0.5 <= py < 63.5)
        return
    bx, by = _brightest(out["image"])
    assert abs(bx - px) <= 1.5 and abs(by - py) <= 1.5, (bx, by, px, py)
    assert out["mask"][0, round(py) - 1 : round(py) + 2, round(px) - 1 : round(px) + 2].any()
    ys, xs = torch.nonzero(out["mask"][0], as_tuple=True)
    assert abs(xs.float().mean() - px) <= 1.5 and abs(ys.float().mean() - py) <= 1.5
    assert not out["parts_visible"][1]  # invisible stays invisible


def test_flip_only_is_exact() -> None:
    cfg = resolve_data_config(input_size=(1, 40, 60), mean=(0.0,), std=(1.0,), crop_pct=1.0)
    transform = build_transforms(cfg, train=True, hflip=1.0, crop_scale=None, affine=None)
    out = transform(_dot_item(40, 60, x=12.0, y=30.0))
    assert out["parts"][0].tolist() == [47.0, 30.0] and _brightest(out["image"]) == (47, 30)
    assert out["mask"][0, 30, 47] == 1


def test_eval_resize_center_crop_maps_keypoints() -> None:
    cfg = resolve_data_config(input_size=(3, 32, 32), mean=(0.0,), std=(1.0,), crop_pct=0.8)
    transform = build_transforms(cfg, train=False)
    out = transform(_dot_item(100, 80, x=30.0, y=55.0))
    assert out["image"].shape == (3, 32, 32)  # gray replicated to 3 channels
    px, py = out["parts"][0].tolist()
    bx, by = _brightest(out["image"])
    assert abs(bx - px) <= 1 and abs(by - py) <= 1 and out["parts_visible"].tolist() == [True, False]
    # The corner keypoint (2, 2) lies outside the central crop of a 100x80 image.
    assert out["parts"][1].min() < -0.5


def test_keypoint_pushed_out_becomes_invisible() -> None:
    cfg = resolve_data_config(input_size=(1, 32, 32), mean=(0.0,), std=(1.0,), crop_pct=1.0)
    transform = build_transforms(
        cfg, train=True, hflip=0.0, crop_scale=None, affine=AffineAug(degrees=0, translate=0.5, scale=(1.0, 1.0)),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    hidden = 0
    for _ in range(20):
        item = _dot_item(32, 32, x=2.0, y=16.0)
        item["parts_visible"] = torch.tensor([True, True])
        out = transform(item)
        outside = not (-0.5 <= out["parts"][0, 0] < 31.5 and -0.5 <= out["parts"][0, 1] < 31.5)
        assert bool(out["parts_visible"][0]) == (not outside)
        hidden += outside
    assert hidden > 0


def test_rgb_to_gray_normalise_and_views() -> None:
    cfg = resolve_data_config(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,), crop_pct=1.0)
    transform = build_transforms(cfg, train=False)
    view = {"image": torch.ones(3, 16, 16), "label": 1}
    out = transform({"views": {"cc": view, "mlo": view}, "label": 1, "id": "b", "image": torch.zeros(1, 16, 16)})
    assert out["id"] == "b" and set(out["views"]) == {"cc", "mlo"} and out["image"].shape == (1, 8, 8)
    assert out["views"]["cc"]["image"].shape == (1, 8, 8)
    torch.testing.assert_close(out["views"]["mlo"]["image"], torch.ones(1, 8, 8))
