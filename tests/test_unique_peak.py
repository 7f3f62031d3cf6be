"""Unique peak (#13): the margin between a prototype's peak and its best far-away rival equals a plain
loop; near neighbours are free; the loss weights refuse a bad window; optimizing the term widens the
gap of a real model's maps; fit adds it to the phases that train the prototypes only."""

from __future__ import annotations

import pytest
import torch

import protozoo
from protozoo.data.collate import collate_items
from protozoo.data.synthetic import SyntheticParts
from protozoo.train import Recipe, fit
from protozoo.train.losses import LossWeights
from protozoo.train.unique_peak import peak_rival_gap, unique_peak_cost


def loop_cost(activations, own, margin, radius):
    costs = []
    for b, p in own.nonzero().tolist():
        a = activations[b, p]
        h, w = a.shape
        peak = int(a.flatten().argmax())
        pr, pc = divmod(peak, w)
        rivals = [float(a[r, c]) for r in range(h) for c in range(w) if max(abs(r - pr), abs(c - pc)) > radius]
        costs.append(max(margin - (float(a[pr, pc]) - max(rivals)), 0.0) if rivals else 0.0)
    return sum(costs) / max(len(costs), 1)


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_cost_equals_a_plain_loop(radius):
    g = torch.Generator().manual_seed(0)
    activations = torch.rand(3, 4, 6, 5, generator=g) * 3
    own = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=torch.bool)
    got = unique_peak_cost(activations, own, margin=1.5, radius=radius)
    assert got.item() == pytest.approx(loop_cost(activations, own, 1.5, radius), rel=1e-6)


def test_near_neighbours_are_free_and_a_far_tie_costs_the_margin():
    a = torch.zeros(1, 1, 7, 7)
    a[0, 0, 3, 3] = 5.0
    a[0, 0, 4, 5] = 5.0  # a tie two cells away: inside the radius-2 window
    own = torch.ones(1, 1, dtype=torch.bool)
    assert unique_peak_cost(a, own, margin=1.0, radius=2).item() == 0.0
    a[0, 0, 0, 6] = 5.0  # a tie far away (the peak is the first maximum, cell (3, 3))
    assert peak_rival_gap(a, 2).item() == 0.0
    assert unique_peak_cost(a, own, margin=1.0, radius=2).item() == pytest.approx(1.0)
    assert unique_peak_cost(a, ~own, margin=1.0, radius=2).item() == 0.0  # not an own pair: not scored
    assert peak_rival_gap(a, 6).item() == float("inf")  # the window covers the map: no rival
    assert unique_peak_cost(a, own, margin=1.0, radius=6).item() == 0.0


def test_loss_weights_refuse_a_bad_window():
    with pytest.raises(ValueError, match="unique_peak_radius"):
        LossWeights(unique_peak_radius=-1)
    with pytest.raises(ValueError, match="unique_peak_radius"):
        LossWeights(unique_peak_radius=1.5)
    with pytest.raises(ValueError, match="unique_peak_margin"):
        Recipe(loss={"unique_peak": 1.0, "unique_peak_margin": 0})


def tiny_model():
    torch.manual_seed(0)
    return protozoo.create_model(
        "protopnet_resnet18",
        num_classes=2,
        prototypes_per_class=2,
        prototype_dim=8,
        feature_stage=2,  # stride 8: 8 x 8 cells at 64 px
        pretrained_backbone=False,
    )


def test_optimizing_the_term_widens_the_gap_of_own_maps():
    model = tiny_model().train()
    data = SyntheticParts("train", image_size=64, num_samples=8, num_classes=2)
    batch = collate_items([data[i] for i in range(8)])
    own = model.prototype_class[None, :] == batch["label"][:, None]  # (B, P)
    optimizer = torch.optim.Adam(
        list(model.head.add_on.parameters()) + [model.head.prototypes] + list(model.backbone.parameters()), lr=0.01
    )

    def cost():
        maps = model.head.activation(model(batch["image"]).distance_maps)  # (B, P, h, w)
        return unique_peak_cost(maps, own, margin=1.0, radius=1)

    before = cost().item()
    assert before > 0
    for _ in range(20):
        optimizer.zero_grad()
        cost().backward()
        optimizer.step()
    assert cost().item() < 0.5 * before


def test_fit_adds_the_term_where_the_prototypes_train(tmp_path):
    data = SyntheticParts("train", image_size=64, num_samples=8, num_classes=2)
    recipe = Recipe(
        epochs=2,
        warm_epochs=1,
        push_start=2,
        push_every=2,
        last_layer_epochs=1,
        batch_size=4,
        loss=LossWeights(unique_peak=1.0, unique_peak_radius=1),
        seed=0,
    )
    history = fit(tiny_model(), data, val_data=data, recipe=recipe, out_dir=tmp_path, progress=False).history
    rows = [row for row in history if row.get("kind") == "train"]
    scored = {row["phase"] for row in rows if "unique_peak" in row}
    assert scored == {"warm", "joint"}
    assert all(row["unique_peak"] >= 0 for row in rows if "unique_peak" in row)
