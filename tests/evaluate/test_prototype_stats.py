"""Prototype statistics: nearest-patch purity against a plain loop, duplicates, provenance."""

from __future__ import annotations

import torch

from protozoo.data.collate import collate_items
from protozoo.evaluate import duplicate_pairs, prototype_stats


def test_purity_matches_loop(tiny_model, parts_data):
    k = 4
    batch = collate_items([parts_data[i] for i in range(len(parts_data))])
    with torch.no_grad():
        distances = tiny_model.distance_maps(batch["image"])  # (N, P, H, W)
    stats = prototype_stats(tiny_model, parts_data, k=k, batch_size=5)
    for p in range(tiny_model.num_prototypes):
        patches = sorted(
            (distances[i, p, y, x].item(), i)
            for i in range(distances.shape[0]) for y in range(distances.shape[2]) for x in range(distances.shape[3])
        )[:k]  # fmt: skip
        expected_purity = sum(batch["label"][i].item() == tiny_model.prototype_class[p].item() for _, i in patches) / k
        assert stats.nearest_images[p].tolist() == [i for _, i in patches]
        assert abs(stats.purity[p].item() - expected_purity) < 1e-6
    assert stats.distinct_source_images is None and stats.num_prototypes == 9


def test_duplicates_and_provenance(tiny_model, parts_data):
    prototypes = torch.tensor([[1.0, 0.0], [2.0, 0.001], [0.0, 1.0], [0.0, 1.01]])
    assert duplicate_pairs(prototypes) == [(0, 1), (2, 3)]
    assert duplicate_pairs(prototypes, cosine=1.1, distance=0.001) == [(2, 3)]
    tiny_model.provenance = [{"prototype": p, "class": p // 3, "image_id": f"img{p % 4}"} for p in range(9)]
    try:
        assert prototype_stats(tiny_model, parts_data, k=1).distinct_source_images == 4
    finally:
        tiny_model.provenance = None
