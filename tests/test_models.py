"""Every registered model builds, runs forward and backward, reloads identically, and reads grayscale.

Parametrized over the registry, so a newly registered model is tested for free.
"""

import pytest
import torch

import protozoo

SMALL = dict(num_classes=3, prototypes_per_class=2, prototype_dim=16)
QUICK_BACKBONES = ("resnet18", "efficientnet_lite0", "vit_tiny")


def registry_params():
    """Every registered model: all ProtoPNet backbones and every family on a few backbones by
    default; the other families' remaining backbones are marked slow (``make test-slow``, run by CI)."""
    params = []
    for name in protozoo.list_models():
        quick = protozoo.registry.model_family(name) == "protozoo.models.protopnet"
        quick = quick or name.endswith(QUICK_BACKBONES)
        params.append(pytest.param(name, marks=() if quick else pytest.mark.slow))
    return params


def test_size(name: str) -> int:
    """Smallest convenient test input: Inception/NASNet/Xception stems need more than 64 px."""
    cfg = protozoo.registry.resolve(name)
    return 64 if cfg.input_size[-1] == 224 else 128


test_size.__test__ = False  # a helper, not a test


def model_inputs(model, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Forward arguments for a batch ``x``: multi-view models (``model.views``, e.g. CC and MLO)
    read one batch per view, here ``x`` and random batches of its shape."""
    views = getattr(model, "views", ("image",))
    return (x, *(torch.randn_like(x) for _ in views[1:]))


@pytest.mark.parametrize("name", registry_params())
def test_forward_backward_save_load(name, tmp_path):
    model = protozoo.create_model(name, **SMALL)
    size = test_size(name)
    x = torch.randn(2, model.config.in_chans, size, size)
    inputs = model_inputs(model, x)
    out = model(*inputs)
    # P = prototypes_per_class per prototype class (the K classes; the lesion types of a lesion head)
    num_prototypes = SMALL["prototypes_per_class"] * len(model.prototype_class.unique())
    assert out.logits.shape == (2, 3)
    assert out.similarities.shape == out.min_distances.shape == (2, num_prototypes)
    assert out.distance_maps.shape[:2] == (2, num_prototypes)
    assert model.latent(x).shape[1] == 16
    (out.logits.sum() + out.min_distances.mean()).backward()
    assert model.prototypes.grad is not None and model.prototypes.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.head.add_on.parameters())

    model.eval()
    model.save_pretrained(tmp_path)
    reloaded = protozoo.load(str(tmp_path))
    with torch.no_grad():
        a, b = model(*inputs), reloaded(*inputs)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.min_distances, b.min_distances)
    assert reloaded.config == model.config


@pytest.mark.parametrize("name", registry_params())
def test_grayscale_in_chans_1(name):
    model = protozoo.create_model(name, in_chans=1, **SMALL).eval()
    size = test_size(name)
    with torch.no_grad():
        out = model(*model_inputs(model, torch.randn(1, 1, size, size)))
    assert out.logits.shape == (1, 3)
    assert model.pretrained_cfg.input_size[0] == 1 and len(model.pretrained_cfg.mean) == 1


def test_any_timm_backbone_and_stage():
    model = protozoo.create_model("protopnet_resnet18", backbone="regnetx_002", feature_stage=3, **SMALL)
    assert model.backbone.reduction == 16
    assert model(torch.randn(1, 3, 64, 64)).distance_maps.shape[-2:] == (4, 4)


def test_vit_backbone_gives_nchw_patch_grid():
    model = protozoo.create_model("protopnet_vit_tiny", **SMALL)
    assert model.backbone.reduction == 16
    assert model.latent(torch.randn(1, 3, 96, 96)).shape == (1, 16, 6, 6)


def test_unknown_backbone_suggests_timm_names():
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet180'.*resnet18"):
        protozoo.create_model("protopnet_resnet18", backbone="resnet180")
