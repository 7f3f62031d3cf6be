"""``input_blur`` (#13): a Gaussian low-pass before the backbone, so pixel noise averages out before the
first convolution (what Huang et al.'s stability score perturbs)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

import protozoo
from protozoo.backbones import Backbone
from protozoo.evaluate.stability import gaussian_noise


def _model(sigma: float):
    torch.manual_seed(0)
    return protozoo.create_model(
        "protopnet_resnet18", num_classes=2, prototypes_per_class=2, prototype_dim=16, input_blur=sigma
    ).eval()


def test_the_backbone_reads_the_blurred_image():
    sharp, blurred = _model(0.0), _model(1.5)
    blurred.load_state_dict(sharp.state_dict())
    x = torch.randn(2, 3, 64, 64)
    low_pass = gaussian_blur(x, kernel_size=2 * 5 + 1, sigma=1.5)  # 2 * ceil(3 sigma) + 1 taps
    with torch.no_grad():
        assert torch.allclose(blurred.backbone(x), sharp.backbone(low_pass), atol=1e-6)
        assert torch.allclose(blurred(x).logits, sharp(low_pass).logits, atol=1e-6)
        flat = torch.full((1, 3, 64, 64), 0.3)  # reflected edges: a constant image is left as it is
        assert torch.allclose(blurred(flat).logits, sharp(flat).logits, atol=1e-6)


def test_blur_damps_the_stability_noise_in_the_features():
    sharp, blurred = _model(0.0), _model(1.0)
    blurred.load_state_dict(sharp.state_dict())
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    x = torch.stack([torch.sin(3 * xx), torch.cos(2 * yy), xx * yy])[None].repeat(4, 1, 1, 1)  # smooth images
    noisy = gaussian_noise(std=0.2, clip=0.25, seed=0)(x.clone())

    def change(model):
        with torch.no_grad():
            clean, moved = model.backbone(x), model.backbone(noisy)
        return float((moved - clean).norm() / clean.norm())

    assert change(blurred) < 0.6 * change(sharp)


def test_input_blur_survives_save_and_load_and_refuses_a_negative_sigma(tmp_path):
    model = _model(1.0)
    model.save_pretrained(tmp_path / "m")
    loaded = protozoo.load(tmp_path / "m").eval()
    assert loaded.config.input_blur == 1.0 and loaded.backbone.input_blur == 1.0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
    with pytest.raises(ValueError, match="input_blur must be a sigma >= 0"):
        Backbone("resnet18", input_blur=-1.0)
    for wrong in ("1.0", True, None):  # the CLI's --model-option input_blur=... parses JSON; a string is refused
        with pytest.raises(ValueError, match="input_blur must be a sigma >= 0"):
            Backbone("resnet18", input_blur=wrong)
