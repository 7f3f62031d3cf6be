"""Grad-CAM, Grad-CAM++ and Score-CAM (grad-cam package) against hand-written versions of their
formulas; the maps feed localization."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from protozoo.data import load_dataset
from protozoo.evaluate import gradcam, localization_from_maps, posthoc_localization, posthoc_maps
from protozoo.evaluate.posthoc import default_target_layer


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=3).eval()


def activations_and_grads(model, layer, images, targets):
    store = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: store.update(a=output))
    logits = model(images)
    handle.remove()
    grads = torch.autograd.grad(logits[torch.arange(len(images)), targets].sum(), store["a"])[0]  # (B, C, h, w)
    return store["a"].detach(), grads


def scaled(cam, size):
    """The package's post-processing: ReLU, min-max per image, then resize (bilinear)."""
    cam = F.relu(cam)
    flat = cam.flatten(1)
    cam = (cam - flat.min(1).values[:, None, None]) / (1e-7 + (flat.max(1).values - flat.min(1).values)[:, None, None])
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def manual_gradcam(model, layer, images, targets):
    a, g = activations_and_grads(model, layer, images, targets)
    return scaled((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1), images.shape[-2:])


def manual_gradcam_pp(model, layer, images, targets):
    """Chattopadhay et al. 2018, eq. 19 with the exponential of the score (the usual closed form)."""
    a, g = activations_and_grads(model, layer, images, targets)
    g2, g3 = g**2, g**3
    alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3 + 1e-6)  # the package's epsilon
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (F.relu(g) * alpha).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    return scaled((weights * a).sum(dim=1), images.shape[-2:])


def manual_scorecam(model, layer, images, targets):
    """Wang et al. 2020: each upsampled, min-max scaled activation masks the input; softmax of the scores."""
    a, _ = activations_and_grads(model, layer, images, targets)
    up = F.interpolate(a, size=images.shape[-2:], mode="bilinear", align_corners=False)  # (B, C, H, W)
    lo, hi = up.flatten(2).min(2).values[..., None, None], up.flatten(2).max(2).values[..., None, None]
    up = (up - lo) / (hi - lo + 1e-8)
    cams = []
    with torch.no_grad():
        for b in range(len(images)):
            masked = images[b][None] * up[b][:, None]  # (C, 3, H, W)
            scores = model(masked)[:, targets[b]]  # (C,)
            cams.append((scores.softmax(dim=0)[:, None, None] * a[b]).sum(dim=0))
    return scaled(torch.stack(cams), images.shape[-2:])


@pytest.mark.parametrize("method,manual", [("gradcam", manual_gradcam), ("gradcam++", manual_gradcam_pp)])
def test_gradient_cams_match_their_formulas(classifier, method, manual):
    images = torch.randn(3, 3, 64, 64)
    maps = posthoc_maps(classifier, images, method)
    assert maps.shape == (3, 64, 64) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    targets = classifier(images).argmax(dim=1)
    torch.testing.assert_close(maps, manual(classifier, classifier.layer4, images, targets), atol=2e-3, rtol=0)
    other = torch.tensor([2, 1, 0])
    torch.testing.assert_close(posthoc_maps(classifier, images, method, targets=other),
                               manual(classifier, classifier.layer4, images, other), atol=2e-3, rtol=0)
    masks = torch.zeros(3, 64, 64)
    masks[:, 20:40, 20:40] = 1
    assert localization_from_maps(maps, masks).evaluated == 3


def test_scorecam_matches_its_definition():
    torch.manual_seed(0)
    small = timm.create_model("resnet10t", num_classes=3).eval()
    images = torch.randn(2, 3, 32, 32)
    targets = torch.tensor([1, 2])
    maps = posthoc_maps(small, images, "scorecam", targets=targets)
    torch.testing.assert_close(maps, manual_scorecam(small, small.layer4, images, targets), atol=2e-3, rtol=0)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown post-hoc method 'lime'.*gradcam"):
        posthoc_maps(timm.create_model("resnet10t", num_classes=2), torch.randn(1, 3, 32, 32), "lime")


def test_any_module_with_a_target_layer(tiny_model):
    with pytest.raises(ValueError, match="target_layer"):
        default_target_layer(tiny_model)
    maps = gradcam(tiny_model, torch.randn(2, 3, 64, 64), target_layer=tiny_model.head.add_on)  # reads .logits
    assert maps.shape == (2, 64, 64)


def test_posthoc_localization_on_lesions(classifier):
    data = load_dataset("synthetic-fundus", "test", image_size=64, num_samples=4)
    result = posthoc_localization(classifier, data, class_source="true", batch_size=2)
    assert result.details == {"map": "gradcam", "class_source": "true"} and result.per_image["iou"].shape == (4,)
