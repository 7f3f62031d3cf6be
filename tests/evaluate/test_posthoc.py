"""Grad-CAM through captum against a hand-written hook implementation; maps feed localization."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from protozoo.data import load_dataset
from protozoo.evaluate import gradcam, localization_from_maps, posthoc_localization
from protozoo.evaluate.posthoc import default_target_layer


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=3).eval()


def manual_gradcam(model, layer, images, targets):
    store = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: store.update(a=output))
    logits = model(images)
    handle.remove()
    grads = torch.autograd.grad(logits[torch.arange(len(images)), targets].sum(), store["a"])[0]  # (B, C, h, w)
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


def test_gradcam_matches_hooks(classifier):
    images = torch.randn(3, 3, 64, 64)
    maps = gradcam(classifier, images)
    assert maps.shape == (3, 64, 64) and (maps >= 0).all()
    targets = classifier(images).argmax(dim=1)
    expected = manual_gradcam(classifier, classifier.layer4, images, targets)
    assert torch.allclose(maps, expected, atol=1e-5 * expected.abs().max())
    other = torch.tensor([2, 1, 0])
    expected = manual_gradcam(classifier, classifier.layer4, images, other)
    assert torch.allclose(gradcam(classifier, images, targets=other), expected, atol=1e-5 * expected.abs().max())
    masks = torch.zeros(3, 64, 64)
    masks[:, 20:40, 20:40] = 1
    assert localization_from_maps(maps, masks).evaluated == 3


def test_any_module_with_a_target_layer(tiny_model):
    with pytest.raises(ValueError, match="target_layer"):
        default_target_layer(tiny_model)
    maps = gradcam(tiny_model, torch.randn(2, 3, 64, 64), target_layer=tiny_model.head.add_on)  # reads .logits
    assert maps.shape == (2, 64, 64)


def test_posthoc_localization_on_lesions(classifier):
    data = load_dataset("synthetic-fundus", "test", image_size=64, num_samples=4)
    result = posthoc_localization(classifier, data, class_source="true", batch_size=2)
    assert result.details == {"map": "gradcam", "class_source": "true"} and result.per_image["iou"].shape == (4,)
