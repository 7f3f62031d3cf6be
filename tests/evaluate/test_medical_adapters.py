"""Every evaluator runs on the multi-view (CC/MLO) and lesion heads through the adapters."""

from __future__ import annotations

import math

import pytest
import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.evaluate import classification, consistency, localization, model_logits, prototype_maps, stability
from protozoo.evaluate._parts import iterate_batches

SIZE = 64
TINY = dict(backbone="test_resnet", feature_stage=-2, prototypes_per_class=2, prototype_dim=16)


def _with_parts(transform, parts_of):
    """The eval transform, after adding ``parts`` (K, 2) and ``parts_visible`` (K,) to an item and its views."""

    def add(item):
        for target in [item, *item.get("views", {}).values()]:
            target["parts"] = parts_of(target)
            target["parts_visible"] = torch.ones(len(target["parts"]), dtype=torch.bool)
        return transform(item)

    return add


@pytest.fixture(scope="module")
def multiview():
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_multiview_resnet18", **TINY, attention_dim=8, projection_dim=16).eval()
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(1, SIZE, SIZE))
    transform = build_transforms(resolve_data_config(model), train=False)
    nipple = _with_parts(transform, lambda view: torch.as_tensor(view["nipple"], dtype=torch.float32)[None])  # (1, 2)
    return model, load_dataset("synthetic-mammo", "test", image_size=SIZE, num_samples=6, transform=nipple)


@pytest.fixture(scope="module")
def lesion():
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", **TINY).eval()
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(3, SIZE, SIZE))
    transform = build_transforms(resolve_data_config(model), train=False)
    landmarks = _with_parts(
        transform,
        lambda item: torch.stack([torch.as_tensor(item["fovea"]), torch.as_tensor(item["optic_disc"])]).float(),
    )
    return model, load_dataset("synthetic-fundus", "test", image_size=SIZE, num_samples=6, transform=landmarks)


def test_adapters_read_both_views_and_the_lesion_prototypes(multiview, lesion):
    for model, data in (multiview, lesion):
        batch = next(iterate_batches(data, 3, torch.device("cpu")))
        with torch.no_grad():
            maps, logits = prototype_maps(model, batch), model_logits(model, batch)
        assert logits.shape == (3, model.num_classes)
        expected = ["cc", "mlo"] if model is multiview[0] else ["image"]
        assert list(maps) == expected and all(m.shape[:2] == (3, model.num_prototypes) for m in maps.values())
    model, data = multiview
    batch = next(iterate_batches(data, 3, torch.device("cpu")))
    with torch.no_grad():
        torch.testing.assert_close(
            prototype_maps(model, batch)["mlo"], model.similarity_maps(batch["views"]["mlo"]["image"])
        )
        cc, mlo = batch["views"]["cc"]["image"], batch["views"]["mlo"]["image"]
        torch.testing.assert_close(model_logits(model, batch), model(cc, mlo).logits)


@pytest.mark.parametrize("head", ["multiview", "lesion"])
def test_every_evaluator_runs_with_finite_scores_in_range(head, multiview, lesion):
    model, data = {"multiview": multiview, "lesion": lesion}[head]
    view = "cc" if head == "multiview" else None
    scores = {
        "consistency": consistency(model, data, batch_size=3, view=view).score,
        "stability": stability(model, data, batch_size=3, view=view).score,
    }
    for source in ("true", "predicted"):
        result = localization(model, data, batch_size=3, view=view, class_source=source)
        scores |= {
            f"{name}_{source}": getattr(result, name)
            for name in ("pointing_game", "iou", "dice", "activation_precision")
        }
    result = classification(model, data, batch_size=3)
    assert result.num_samples == len(data)
    for name, value in scores.items():
        assert math.isfinite(value), name
        assert 0 <= value <= (100 if name in ("consistency", "stability") else 1), name
    assert 0 <= result.accuracy <= 1 and 0 <= result.balanced_accuracy <= 1
