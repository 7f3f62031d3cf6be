"""Localization: crafted maps and masks with known pointing / IoU / Dice / precision; the model path."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FakeModel

from protozoo.evaluate import localization, localization_from_maps


def crafted():
    """Three 8x8 images: a half-covered lesion, a missed lesion, no lesion."""
    maps, masks = torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)
    masks[0, 0:4, 0:4] = 1  # 16 px
    maps[0, 0:4, 0:2] = 1  # 8 px, all inside
    masks[1, 4:8, 4:8] = 1  # 16 px
    maps[1, 0:2, :] = 1  # 16 px outside, the peak
    maps[1, 4:6, 4:8] = 0.6  # 8 px inside, above the 0.5 threshold
    maps[2, 3, 3] = 1
    return maps, masks


def test_known_scores():
    maps, masks = crafted()
    result = localization_from_maps(maps, masks)
    assert result.evaluated == 2
    assert result.per_image["pointing_game"].tolist()[:2] == [1.0, 0.0]
    assert result.per_image["iou"].tolist()[:2] == [0.5, 0.25]  # 8 / 16; 8 / (24 + 16 - 8)
    assert result.per_image["dice"][:2].tolist() == pytest.approx([16 / 24, 16 / 40])
    assert result.per_image["activation_precision"].tolist()[:2] == [1.0, 0.0]  # top ceil(3.2) = 4 px
    assert all(math.isnan(v[2].item()) for v in result.per_image.values())  # no lesion: left out
    assert result.pointing_game == 0.5 and result.iou == 0.375
    assert result.dice == pytest.approx((16 / 24 + 16 / 40) / 2) and result.activation_precision == 0.5


def test_threshold_top_fraction_and_lesion_channels():
    maps, masks = crafted()
    strict = localization_from_maps(maps, masks, threshold=0.7)
    assert strict.per_image["iou"].tolist()[:2] == [0.5, 0.0]
    wide = localization_from_maps(maps, masks, top_fraction=0.375)  # top 24 px: 16 outside, 8 inside
    assert wide.per_image["activation_precision"][1].item() == pytest.approx(8 / 24)
    split = torch.zeros(3, 2, 8, 8)  # the first lesion split over two channels: same union
    split[:, 0, :, :2], split[:, 1, :, 2:] = masks[:, :, :2], masks[:, :, 2:]
    assert localization_from_maps(maps, split).iou == 0.375
    coarse = localization_from_maps(maps[:, ::2, ::2], masks)  # 4x4 maps, upsampled to 8x8
    assert coarse.evaluated == 2 and coarse.per_image["pointing_game"].tolist()[:2] == [1.0, 0.0]


def test_model_uses_top_prototype_of_the_chosen_class():
    maps, masks = crafted()
    # Prototypes 0, 1 of class 0 and 2, 3 of class 1; the image's channel c is prototype c's map.
    stack = torch.stack([maps, maps.roll(4, dims=2), maps * 2, maps.flip(1)], dim=1)  # (3, 4, 8, 8)
    items = [{"image": stack[i], "label": 1, "mask": masks[i][None], "id": str(i)} for i in range(3)]
    model = FakeModel(lambda x: x, [0, 0, 1, 1], logits_fn=lambda x: torch.tensor([[1.0, 0.0]]).expand(len(x), 2))
    true = localization(model, items, batch_size=2)  # class 1: prototype 2 (peak 2 > 1)
    assert true.iou == localization_from_maps(maps * 2, masks).iou and true.details["class_source"] == "true"
    predicted = localization(model, items, class_source="predicted")  # class 0: prototype 0 (ties: first)
    assert predicted.per_image["iou"].tolist()[:2] == localization_from_maps(maps, masks).per_image["iou"].tolist()[:2]
    with pytest.raises(ValueError, match="mask"):
        localization(model, [{k: v for k, v in item.items() if k != "mask"} for item in items])


def test_mask_localization_is_the_ceiling_a_perfect_map_reaches():
    """The masks as maps: pointing game and IoU 1; activation precision min(1, lesion px / top px),
    below 1 for a lesion smaller than the top fraction; a model's score never exceeds it."""
    from protozoo.evaluate import mask_localization

    maps, masks = crafted()
    masks[1] = 0
    masks[1, 0, 0] = 1  # 1 px lesion: at most 1 of the top 4 px can be lesion
    items = [
        {"image": maps[i][None].expand(4, -1, -1), "label": 1, "mask": masks[i][None], "id": str(i)} for i in range(3)
    ]
    model = FakeModel(lambda x: x, [0, 0, 1, 1], logits_fn=lambda x: torch.zeros(len(x), 2))
    ceiling = mask_localization(model, items, batch_size=2)
    assert ceiling.evaluated == 2 and ceiling.details["map"] == "the lesion mask itself"
    assert ceiling.per_image["pointing_game"].tolist()[:2] == [1.0, 1.0]
    assert ceiling.per_image["iou"].tolist()[:2] == [1.0, 1.0]
    assert ceiling.per_image["activation_precision"].tolist()[:2] == [1.0, 0.25]  # 16 >= 4 px; 1 of 4 px
    scored = localization(model, items, batch_size=2)
    for name in ("pointing_game", "iou", "activation_precision"):
        assert getattr(scored, name) <= getattr(ceiling, name)
