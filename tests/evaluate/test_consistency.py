"""Consistency and stability (Huang et al. 2023): plain loops, crafted maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SIZE, FakeModel

from protozoo.data.collate import collate_items
from protozoo.evaluate import consistency, consistency_and_stability, gaussian_noise, stability
from protozoo.evaluate._parts import box_half_size, pick_view
from protozoo.resample import upsample_bicubic


def reference_counts(model, images, labels, parts, visible, half):
    """Loop over images, then own-class prototypes, then parts, as the paper's code does.

    Returns per (prototype, image) the parts-inside list, and (P, K) inside / visible counts.
    """
    maps = model.similarity_maps(images).detach()
    num_prototypes, num_parts = maps.shape[1], parts.shape[1]
    inside_counts = np.zeros((num_prototypes, num_parts))
    visible_counts = np.zeros((num_prototypes, num_parts))
    vectors = {}
    for i in range(len(images)):
        for p in range(num_prototypes):
            if int(model.prototype_class[p]) != int(labels[i]):
                continue
            up = F.interpolate(maps[i, p][None, None], size=(SIZE, SIZE), mode="bicubic", align_corners=False)
            y, x = np.unravel_index(np.argmax(up[0, 0].numpy()), (SIZE, SIZE))
            x0, x1 = max(-0.5, x - half), min(SIZE - 0.5, x + half)
            y0, y1 = max(-0.5, y - half), min(SIZE - 0.5, y + half)
            vector = []
            for k in range(num_parts):
                if not visible[i, k]:
                    continue
                px, py = float(parts[i, k, 0]), float(parts[i, k, 1])
                hit = x0 <= px <= x1 and y0 <= py <= y1
                visible_counts[p, k] += 1
                inside_counts[p, k] += hit
                vector.append(hit)
            vectors[p, i] = vector
    return vectors, inside_counts, visible_counts


def test_consistency_and_stability_match_loops(tiny_model, parts_data):
    batch = collate_items([parts_data[i] for i in range(len(parts_data))])
    images, labels, parts, visible = batch["image"], batch["label"], batch["parts"], batch["parts_visible"]
    half = box_half_size(SIZE)
    with torch.no_grad():
        clean, inside, seen = reference_counts(tiny_model, images, labels, parts, visible, half)
        noise = (torch.randn(images.shape, generator=torch.Generator().manual_seed(3)) * 0.2).clamp(-0.25, 0.25)
        noisy, _, _ = reference_counts(tiny_model, images + noise, labels, parts, visible, half)

    ratios = np.where(seen > 0, inside / np.maximum(seen, 1), -1.0)
    evaluated = (seen > 0).any(axis=1)
    stable = {key: clean[key] == noisy[key] for key in clean}
    pooled = 100 * np.mean(list(stable.values()))
    per_prototype = [np.mean([v for (p, _), v in stable.items() if p == q]) for q in range(tiny_model.num_prototypes)]

    c, s = consistency_and_stability(tiny_model, parts_data, seed=3, batch_size=len(parts_data))
    assert c.score == pytest.approx(100 * np.mean(ratios.max(axis=1)[evaluated] >= 0.8))
    assert torch.allclose(c.best_ratio, torch.tensor(ratios.max(axis=1), dtype=torch.float))
    assert torch.equal(c.evaluated, torch.tensor(evaluated))
    assert s.score == pytest.approx(100 * np.mean(per_prototype))  # the paper's: mean over prototypes
    assert s.pooled == pytest.approx(pooled)
    assert torch.allclose(s.per_prototype, torch.tensor(per_prototype, dtype=torch.float))
    # Another mu and another batch size: consistency does not depend on the batching.
    low = consistency(tiny_model, parts_data, mu=0.3, batch_size=5)
    assert low.score == pytest.approx(100 * np.mean(ratios.max(axis=1)[evaluated] >= 0.3))
    assert 0 < low.score < 100  # a non-trivial case


PARTS = torch.tensor([[10.0, 10.0], [30.0, 12.0], [12.0, 40.0]])  # (K, 2) x, y; all in the left half


def spot_item(label, spot, visible=(True, True, True)):
    """An image whose channel 0 is 0 except 10 at pixel ``spot`` (x, y); channel 1 peaks at the far right."""
    image = torch.zeros(3, SIZE, SIZE)
    image[0, spot[1], spot[0]] = 10.0
    image[1, SIZE // 2, SIZE - 1] = 10.0
    visible = torch.tensor(visible)
    return {"image": image, "label": label, "parts": PARTS.clone(), "parts_visible": visible, "id": str(spot)}


def spot_model():
    """Prototype 2c+0 follows the channel-0 spot, prototype 2c+1 the channel-1 spot (off every part)."""
    return FakeModel(lambda x: x[:, :2].repeat(1, 2, 1, 1), [0, 0, 1, 1])


def test_crafted_consistency_known_answers():
    on_part = [spot_item(0, (30, 12)), spot_item(0, (31, 13)), spot_item(1, (12, 40)), spot_item(1, (12, 41))]
    result = consistency(spot_model(), on_part)
    assert result.half_size == 10
    assert result.consistent.tolist() == [True, False, True, False]  # map on a part / map off every part
    assert result.score == 50.0
    assert result.best_part.tolist() == [1, 0, 2, 0] and result.best_ratio.tolist() == [1.0, 0.0, 1.0, 0.0]
    # Part 1 inside in 3 of the 4 class-0 images: ratio 0.75, consistent only for mu <= 0.75.
    three_of_four = [spot_item(0, (30, 12))] * 3 + [spot_item(0, (55, 55)), spot_item(1, (12, 40))]
    assert consistency(spot_model(), three_of_four).best_ratio[0] == 0.75
    assert consistency(spot_model(), three_of_four).consistent[0].item() is False
    assert consistency(spot_model(), three_of_four, mu=0.75).consistent[0].item() is True
    # Invisible parts do not count: part 1 hidden in the off-part image leaves 3 of 3.
    hidden = three_of_four[:3] + [spot_item(0, (55, 55), visible=(True, False, True)), spot_item(1, (12, 40))]
    assert consistency(spot_model(), hidden).best_ratio[0] == 1.0


def test_always_on_part_is_100_and_off_parts_is_0():
    items = [spot_item(0, (30, 12)), spot_item(1, (30, 12)), spot_item(0, (29, 14))]
    on = FakeModel(lambda x: x[:, :1].repeat(1, 4, 1, 1), [0, 0, 1, 1])
    off = FakeModel(lambda x: x[:, 1:2].repeat(1, 4, 1, 1), [0, 0, 1, 1])
    assert consistency(on, items).score == 100.0
    assert consistency(off, items).score == 0.0


def test_unmovable_map_is_stable():
    items = [spot_item(i % 2, (30, 12 + i)) for i in range(6)]
    for space in ("normalized", "pixel"):
        strong = FakeModel(lambda x: x[:, :1].repeat(1, 4, 1, 1) * 100, [0, 0, 1, 1])
        result = stability(strong, items, noise_space=space)
        assert result.score == 100.0 and result.pooled == 100.0 and result.pairs.tolist() == [3, 3, 3, 3]
    # A weak peak on part 0 that the noise drowns: far from always stable.
    weak = [spot_item(i % 2, (5, 5)) for i in range(20)]
    for item in weak:
        item["image"][2, 10, 10] = 0.05
    noise_only = FakeModel(lambda x: x[:, 2:3].repeat(1, 4, 1, 1), [0, 0, 1, 1])
    assert stability(noise_only, weak, half_size=4).score < 20


def test_noise_definition():
    x = torch.zeros(4, 3, 32, 32)
    noise = gaussian_noise(std=0.2, clip=0.25, seed=1)(x)
    assert noise.abs().max() <= 0.25 and 0.15 < noise.std() < 0.2
    assert torch.equal(noise, gaussian_noise(std=0.2, clip=0.25, seed=1)(x))
    mean, std = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])
    pixel = gaussian_noise(space="pixel", seed=1, mean_std=(mean, std))(x)  # x = 0 is pixel 0.5
    assert torch.allclose(pixel, noise / 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="mean and std"):
        gaussian_noise(space="pixel")


def test_view_choice_and_half_size():
    assert pick_view(["image"], None) == "image"
    with pytest.raises(ValueError, match=r"\['cc', 'mlo'\]"):
        pick_view(["cc", "mlo"], None)
    assert box_half_size(224) == 36 and box_half_size(448) == 72 and box_half_size(64, 5) == 5


def test_matmul_upsampling_equals_interpolate():
    maps = torch.randn(20, 7, 5)
    expected = F.interpolate(maps[:, None], size=(56, 33), mode="bicubic", align_corners=False)[:, 0]
    assert torch.allclose(upsample_bicubic(maps, (56, 33)), expected, atol=1e-5)
    assert torch.equal(upsample_bicubic(maps, (7, 5)), maps)  # same size: exactly the identity


def fragile_model():
    """Prototype 0 (class 0) and 1 (class 1) follow the channel-0 spot, which sits on part 1. On a
    "fragile" image (channel 2 all ones) a perturbed copy (channel 2 no longer constant) moves both
    maps' peak to the far corner, off every part: such pairs are unstable, whatever the noise draw."""

    def maps(x):
        spot = x[:, :1]  # (B, 1, H, W)
        noisy = x[:, 2].flatten(1).std(dim=1) > 0.05  # (B,)
        fragile = x[:, 2].flatten(1).mean(dim=1) > 0.5  # (B,)
        corner = torch.zeros_like(spot)
        corner[..., -1, -1] = 100.0
        moved = (noisy & fragile)[:, None, None, None]
        return torch.where(moved, corner, spot).repeat(1, 2, 1, 1)

    return FakeModel(maps, [0, 1])


def fragile_item(label, fragile):
    item = spot_item(label, (30, 12))
    item["image"][2] = 1.0 if fragile else 0.0
    return item


def test_headline_stability_is_the_mean_over_prototypes_with_unequal_classes():
    # Class 0: one image, stable. Class 1: three images, two of them fragile: 1 of 3 stable.
    items = [fragile_item(0, False), fragile_item(1, False), fragile_item(1, True), fragile_item(1, True)]
    model = fragile_model()
    result = stability(model, items)
    assert result.pairs.tolist() == [1, 3]
    assert torch.allclose(result.per_prototype, torch.tensor([1.0, 1 / 3]))
    # The reference code (EvalProtoPNet evaluate_stability): per prototype the share of its images
    # whose parts-inside vector is unchanged, then the mean over prototypes.
    unchanged = {0: [True], 1: [True, False, False]}
    reference = 100 * np.mean([np.mean(unchanged[p]) for p in (0, 1)])
    assert result.score == pytest.approx(reference) == pytest.approx(200 / 3)
    assert result.pooled == pytest.approx(100 * 2 / 4)  # pairs pooled: a different number
    assert result.prototype_mean == result.score
    _, both = consistency_and_stability(model, items)
    assert both.score == result.score and both.pooled == result.pooled


def reference_integer_counts(maps, labels, parts, visible, prototype_class, half, size):
    """The reference's part test (EvalProtoPNet): keypoints truncated by ``int()``, the box
    (max(0, p - h), min(size, p + h)) around the peak of the bicubically upsampled map, bounds
    inclusive. Returns (P, K) inside counts."""
    inside = np.zeros((len(prototype_class), parts.shape[1]))
    for i in range(len(maps)):
        for p in range(len(prototype_class)):
            if int(prototype_class[p]) != int(labels[i]):
                continue
            up = F.interpolate(maps[i, p][None, None], size=(size, size), mode="bicubic", align_corners=False)
            y, x = np.unravel_index(np.argmax(up[0, 0].numpy()), (size, size))
            y0, y1, x0, x1 = max(0, y - half), min(size, y + half), max(0, x - half), min(size, x + half)
            for k in range(parts.shape[1]):
                px, py = int(float(parts[i, k, 0])), int(float(parts[i, k, 1]))
                if visible[i, k] and y0 <= py <= y1 and x0 <= px <= x1:
                    inside[p, k] += 1
    return inside


def test_truncated_keypoints_equal_integer_keypoints(tiny_model, parts_data):
    generator = torch.Generator().manual_seed(0)
    fractional, integer = [], []
    for i in range(len(parts_data)):
        item = dict(parts_data[i])
        parts = (item["parts"].float() + torch.rand(item["parts"].shape, generator=generator)).clamp(0, SIZE - 0.75)
        fractional.append({**item, "parts": parts})
        integer.append({**item, "parts": parts.floor()})  # what int() leaves of the keypoints (all >= 0)
    assert (fractional[0]["parts"] != integer[0]["parts"]).any()
    truncated = consistency(tiny_model, fractional, keypoints="truncate", mu=0.3)
    as_integers = consistency(tiny_model, integer, mu=0.3)
    assert truncated.keypoints == "truncate" and as_integers.keypoints == "float"
    assert torch.equal(truncated.ratios.nan_to_num(-1), as_integers.ratios.nan_to_num(-1))
    assert truncated.score == as_integers.score
    # Both equal the reference's own loop on the float keypoints.
    batch = collate_items(fractional)
    with torch.no_grad():
        maps = tiny_model.similarity_maps(batch["image"])
    expected = reference_integer_counts(maps, batch["label"], batch["parts"], batch["parts_visible"],
                                        tiny_model.prototype_class, box_half_size(SIZE), SIZE)  # fmt: skip
    seen = ~truncated.ratios.isnan()
    visible_counts = np.stack([batch["parts_visible"][batch["label"] == c].sum(0).numpy() for c in range(3)])
    visible_counts = visible_counts[tiny_model.prototype_class.numpy()]  # (P, K)
    assert np.allclose(truncated.ratios[seen].numpy(), (expected / np.maximum(visible_counts, 1))[seen.numpy()])
    s_truncated = stability(tiny_model, fractional, keypoints="truncate", seed=1)
    s_integer = stability(tiny_model, integer, seed=1)
    assert torch.equal(s_truncated.per_prototype.nan_to_num(-1), s_integer.per_prototype.nan_to_num(-1))


def test_truncate_box_is_half_open_in_float_keypoints():
    # Peak at x = 30, half side 10: float keypoints need 20 <= x <= 40; truncated, 20 <= x < 41.
    def item(x):
        return {**spot_item(0, (30, 12)), "parts": torch.tensor([[x, 12.0], [x, 12.0], [x, 12.0]])}

    model = FakeModel(lambda x: x[:, :1], [0])
    for x, as_float, truncated in [(20.0, 1, 1), (19.5, 0, 0), (40.0, 1, 1), (40.5, 0, 1), (40.99, 0, 1), (41.0, 0, 0)]:
        assert consistency(model, [item(x)]).best_ratio[0] == as_float, x
        assert consistency(model, [item(x)], keypoints="truncate").best_ratio[0] == truncated, x
    with pytest.raises(ValueError, match="truncate"):
        consistency(model, [item(20.0)], keypoints="round")
