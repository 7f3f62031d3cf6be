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
    expected_stability = 100 * np.mean(list(stable.values()))
    per_prototype = [np.mean([v for (p, _), v in stable.items() if p == q]) for q in range(tiny_model.num_prototypes)]

    c, s = consistency_and_stability(tiny_model, parts_data, seed=3, batch_size=len(parts_data))
    assert c.score == pytest.approx(100 * np.mean(ratios.max(axis=1)[evaluated] >= 0.8))
    assert torch.allclose(c.best_ratio, torch.tensor(ratios.max(axis=1), dtype=torch.float))
    assert torch.equal(c.evaluated, torch.tensor(evaluated))
    assert s.score == pytest.approx(expected_stability)
    assert torch.allclose(s.per_prototype, torch.tensor(per_prototype, dtype=torch.float))
    assert s.prototype_mean == pytest.approx(100 * np.mean(per_prototype))
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
        assert result.score == 100.0 and result.prototype_mean == 100.0 and result.pairs.tolist() == [3, 3, 3, 3]
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
