"""Bad input gets a ValueError that names the problem and the fix."""

import pytest
import torch

import protozoo


@pytest.fixture(scope="module")
def model():
    return protozoo.create_model("protopnet_resnet18", num_classes=2, prototypes_per_class=1).eval()


def test_wrong_channel_count(model):
    with pytest.raises(ValueError, match=r"expected 3 input channel\(s\) \(B, 3, H, W\), got 1.*in_chans=1"):
        model(torch.rand(1, 1, 64, 64))


def test_grayscale_model_given_rgb():
    gray = protozoo.create_model("protopnet_resnet18", num_classes=2, prototypes_per_class=1, in_chans=1)
    with pytest.raises(ValueError, match="expected 1 input channel.*grayscale"):
        gray(torch.rand(1, 3, 64, 64))


def test_missing_batch_dim(model):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*x\[None\]"):
        model(torch.rand(3, 64, 64))


def test_image_smaller_than_stride(model):
    with pytest.raises(ValueError, match="smaller than the backbone's stride.*32 px"):
        model(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf(model, bad):
    x = torch.rand(1, 3, 64, 64)
    x[0, 1, 3, 4] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(x)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.similarity_maps(x)
