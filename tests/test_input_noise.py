"""Recipe.input_noise: clipped Gaussian noise on the training inputs only, reproducible, checked."""

from __future__ import annotations

import pytest
import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.train import Recipe, fit

TINY = dict(prototypes_per_class=1, prototype_dim=8, feature_stage=2, pretrained_backbone=False)


def _data(model):
    return load_dataset(
        "synthetic-parts",
        "train",
        image_size=32,
        num_samples=8,
        num_classes=2,
        transform=build_transforms(resolve_data_config(model), train=False),
    )


def test_training_inputs_get_the_recipe_noise_and_evaluation_none(monkeypatch):
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, **TINY)
    data = _data(model)
    clean = torch.stack([data[i]["image"] for i in range(len(data))])
    seen = {"train": [], "eval": []}
    forward = type(model).forward

    def spy(self, x):
        seen["train" if self.training else "eval"].append(x.detach().clone())
        return forward(self, x)

    monkeypatch.setattr(type(model), "forward", spy)
    recipe = Recipe(
        epochs=1,
        warm_epochs=1,
        push_start=1,
        push_every=1,
        push_at_end=False,
        last_layer_epochs=0,
        batch_size=8,
        input_noise=0.2,
        seed=3,
    )
    fit(model, data, recipe=recipe, val_data=data, progress=False)
    (train,), (val,) = seen["train"], seen["eval"]
    order = [min(range(len(clean)), key=lambda j: (x - clean[j]).abs().max()) for x in train]  # shuffled
    noise = train - clean[order]
    assert 0.15 < noise.std() < 0.25 and noise.abs().max() <= 0.25 + 1e-6  # std 0.2, clipped at 1.25 std
    assert torch.equal(val, clean)  # validation sees the clean images


def test_input_noise_is_reproducible_and_checked():
    def noise_of(seed):
        torch.manual_seed(0)
        model = protozoo.create_model("protopnet_resnet18", num_classes=2, **TINY)
        recipe = Recipe(
            epochs=1,
            warm_epochs=1,
            push_start=1,
            push_every=1,
            push_at_end=False,
            last_layer_epochs=0,
            batch_size=8,
            input_noise=0.2,
            seed=seed,
        )
        fit(model, _data(model), recipe=recipe, progress=False)
        return model.prototypes.detach().clone()

    assert torch.equal(noise_of(1), noise_of(1))
    with pytest.raises(ValueError, match="input_noise"):
        Recipe(input_noise=-0.1)
