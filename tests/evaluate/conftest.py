"""Tiny models, crafted fake models and small datasets shared by the evaluator tests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.family import Family, register_family
from protozoo.pretrained import PretrainedCfg

SIZE = 64


class FakeModel:
    """A stand-in prototype model whose similarity maps are a given function of the images.

    A family of its own (registered below, with no entrypoints): the evaluators read it through
    the family contract like any protozoo model.
    """

    pretrained_cfg = PretrainedCfg()

    def __init__(self, maps_fn, prototype_class, logits_fn=None):
        self.maps_fn = maps_fn
        self.prototype_class = torch.as_tensor(prototype_class)
        self.num_classes = int(self.prototype_class.max()) + 1
        self.num_prototypes = self.prototype_class.numel()
        self.logits_fn = logits_fn

    def similarity_maps(self, x):
        return self.maps_fn(x)

    def __call__(self, x):
        return SimpleNamespace(logits=self.logits_fn(x))


register_family(Family(name="fake", model_class=FakeModel, backbones={}))


@pytest.fixture(scope="module")
def tiny_model():
    """protopnet_resnet18, 3 classes x 3 prototypes, stride 8 (8x8 maps at 64 px)."""
    torch.manual_seed(0)
    model = protozoo.create_model(
        "protopnet_resnet18", num_classes=3, prototypes_per_class=3, prototype_dim=16, feature_stage=2
    )
    return model.eval()


def eval_transform(model):
    return build_transforms(resolve_data_config(model, input_size=(3, SIZE, SIZE)), train=False)


@pytest.fixture(scope="module")
def parts_data(tiny_model):
    return load_dataset(
        "synthetic-parts", "test", image_size=SIZE, num_samples=12, num_classes=3, transform=eval_transform(tiny_model)
    )
