"""Grad-CAM, Grad-CAM++ and Score-CAM (grad-cam package) against hand-written versions of their
formulas; the maps feed localization."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.evaluate import gradcam, localization, localization_from_maps, posthoc_localization, posthoc_maps
from protozoo.evaluate.posthoc import default_target_layer, saliency_branches


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
    torch.testing.assert_close(
        posthoc_maps(classifier, images, method, targets=other),
        manual(classifier, classifier.layer4, images, other),
        atol=2e-3,
        rtol=0,
    )
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
    maps = gradcam(tiny_model, torch.randn(2, 3, 64, 64), target_layer=tiny_model.head.add_on)  # reads .logits
    assert maps.shape == (2, 64, 64)


def test_default_target_layer_feeds_the_logits(tiny_model):
    """Protozoo models: the backbone, whose output the head reads; other modules: the last spatial
    layer on the logits' graph (a layer computed but unused is skipped)."""
    assert default_target_layer(tiny_model) is tiny_model.backbone
    images = torch.randn(2, 3, 64, 64)
    store = {}
    handle = tiny_model.backbone.register_forward_hook(lambda m, i, o: store.update(features=o))
    tiny_model(images)
    handle.remove()
    assert torch.equal(store["features"], tiny_model.backbone(images))  # what the head is fed

    class Dangling(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 1)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            features = self.used(x)
            self.unused(features)  # on no path to the logits
            return self.fc(features.mean(dim=(2, 3)))

    model = Dangling()
    assert default_target_layer(model) is model.used


def _tiny(arch: str, **overrides):
    torch.manual_seed(0)
    options = dict(prototypes_per_class=2, prototype_dim=16, feature_stage=2) | overrides
    return protozoo.create_model(arch, pretrained_backbone=False, **options).eval()


@pytest.mark.parametrize(
    "arch,spec,options",
    [
        ("braix_protopnet_pp_resnet18", "synthetic-mammo", {"num_classes": 3}),
        ("protopnet_multiview_resnet18", "synthetic-mammo", {"num_classes": 3, "in_chans": 1}),
        ("protopnet_resnet18", "synthetic-fundus", {"num_classes": 2}),
    ],
)
def test_posthoc_localization_with_no_configuration_on_protozoo_models(arch, spec, options):
    """Every head: no target layer, no branch given; the same images as the prototype localization."""
    model = _tiny(arch, **options)
    data = load_dataset(
        spec,
        "test",
        image_size=64,
        num_samples=6,
        transform=build_transforms(resolve_data_config(model, input_size=(model.config.in_chans, 64, 64)), train=False),
    )
    branches = list(saliency_branches(model))
    result = posthoc_localization(model, data, batch_size=3)
    prototypes = localization(model, data, batch_size=3)
    assert result.details["branch"] == branches[0] and result.details["class_source"] == "true"
    assert result.evaluated == prototypes.evaluated > 0  # one image per view, lesion-bearing, as localization
    assert torch.equal(result.per_image["iou"].isnan(), prototypes.per_image["iou"].isnan())


def test_braix_branches_are_its_global_cnn_and_the_ensemble():
    model = _tiny("braix_protopnet_pp_resnet18", num_classes=3)
    assert list(saliency_branches(model)) == ["global", "ensemble"]
    images = torch.randn(2, 1, 64, 64)
    targets = torch.tensor([1, 2])
    # Grad-CAM of the global branch is Grad-CAM of a network that is backbone -> global head
    global_net = torch.nn.Sequential(model.backbone, model.global_head).eval()
    expected = posthoc_maps(global_net, images, "gradcam", targets=targets, target_layer=model.backbone)
    torch.testing.assert_close(posthoc_maps(model, images, "gradcam", targets=targets), expected)
    ensemble = posthoc_maps(model, images, "gradcam", targets=targets, branch="ensemble")
    assert ensemble.shape == (2, 64, 64) and not torch.allclose(ensemble, expected, atol=1e-3)
    with pytest.raises(ValueError, match="unknown branch 'local'.*global, ensemble"):
        posthoc_maps(model, images, "gradcam", branch="local")


def test_posthoc_localization_on_lesions(classifier):
    data = load_dataset("synthetic-fundus", "test", image_size=64, num_samples=4)
    result = posthoc_localization(classifier, data, class_source="true", batch_size=2)
    assert result.details == {"map": "gradcam", "class_source": "true", "branch": "logits"}
    assert result.per_image["iou"].shape == (4,)
