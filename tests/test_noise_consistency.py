"""Noise consistency (#13): the KL between a prototype's spatial activation on clean and noisy inputs
equals torch's kl_div; the recipe refuses it without input noise; fit adds it to training only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import protozoo
from protozoo.data.synthetic import SyntheticParts
from protozoo.train import Recipe, fit
from protozoo.train.losses import LossWeights
from protozoo.train.noise_consistency import noise_consistency_cost


def test_cost_equals_torch_kl_div_over_own_pairs():
    g = torch.Generator().manual_seed(0)
    clean, noisy = torch.rand(3, 4, 5, 5, generator=g) * 4, torch.rand(3, 4, 5, 5, generator=g) * 4
    own = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=torch.bool)
    expected = []
    for b, p in own.nonzero().tolist():
        target = F.softmax(clean[b, p].flatten() / 2.0, dim=0)
        moved = F.log_softmax(noisy[b, p].flatten() / 2.0, dim=0)
        expected.append(F.kl_div(moved, target, reduction="sum"))
    got = noise_consistency_cost(clean, noisy, own, temperature=2.0)
    torch.testing.assert_close(got, torch.stack(expected).mean())
    assert noise_consistency_cost(clean, clean, own).item() == pytest.approx(0.0, abs=1e-6)  # no move, no cost


def test_recipe_refuses_noise_consistency_without_input_noise():
    with pytest.raises(ValueError, match="input_noise"):
        Recipe(loss=LossWeights(noise_consistency=1.0))
    with pytest.raises(ValueError, match="input_noise"):  # a recipe file's table, too
        Recipe(loss={"noise_consistency": 1.0})
    Recipe(loss=LossWeights(noise_consistency=1.0), input_noise=0.2)  # fine


def test_fit_adds_the_term_to_training_passes_only(tmp_path):
    torch.manual_seed(0)
    data = SyntheticParts("train", image_size=64, num_samples=8, num_classes=2)
    model = protozoo.create_model(
        "protopnet_resnet18",
        num_classes=2,
        prototypes_per_class=1,
        prototype_dim=8,
        feature_stage=3,
        pretrained_backbone=False,
    )
    recipe = Recipe(
        epochs=2,
        warm_epochs=1,
        push_start=2,
        push_every=2,
        last_layer_epochs=1,
        batch_size=4,
        input_noise=0.2,
        loss=LossWeights(noise_consistency=1.0),
        seed=0,
    )
    history = fit(model, data, val_data=data, recipe=recipe, out_dir=tmp_path, progress=False).history
    rows = [row for row in history if row.get("kind") == "train"]
    assert rows and all(row["noise_consistency"] >= 0 for row in rows)
    assert not any("val_noise_consistency" in row for row in rows)  # validation sees clean inputs only
