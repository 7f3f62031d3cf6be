"""The registry: names, patterns, aliases, pretrained tags, helpful errors."""

import pytest

import protozoo
from protozoo import registry
from protozoo.pretrained import PretrainedCfg

DERMATOLOGY_BENCHMARK = [  # the eleven architectures the skin-lesion explainability benchmark compared
    "densenet121",
    "efficientnet_b0",
    "inception_v3",
    "inception_resnet_v2",
    "mobilenet",
    "mobilenetv2",
    "nasnet",
    "resnet50",
    "resnet50v2",
    "vgg16",
    "xception",
]
EXTRA = ["resnet18", "resnet34", "vgg19", "efficientnet_lite0", "convnext_tiny", "vit_tiny"]


def test_all_required_backbones_registered():
    names = protozoo.list_models("protopnet_*")
    for suffix in DERMATOLOGY_BENCHMARK + EXTRA:
        assert f"protopnet_{suffix}" in names


def test_list_models_fnmatch_and_sorted():
    assert protozoo.list_models("protopnet_resnet*") == [
        "protopnet_resnet18",
        "protopnet_resnet34",
        "protopnet_resnet50",
        "protopnet_resnet50v2",
    ]
    assert protozoo.list_models(["protopnet_vgg1?"]) == ["protopnet_vgg16", "protopnet_vgg19"]
    assert len(protozoo.list_models("*_vgg16")) == 5  # every family on every backbone
    assert protozoo.list_models("nothing*") == []


def test_split_and_resolve():
    assert registry.split_model_name("protopnet_resnet18.synth_parts") == ("protopnet_resnet18", "synth_parts")
    assert registry.split_model_name("protopnet_resnet18") == ("protopnet_resnet18", "")
    cfg = registry.resolve("protopnet_resnet18")
    assert cfg.architecture == "protopnet_resnet18" and not cfg.has_weights
    assert registry.resolve("protopnet_inception_v3").input_size == (3, 299, 299)
    with pytest.raises(ValueError, match="has no weights tagged 'nope'"):
        registry.resolve("protopnet_resnet18.nope")


def test_unknown_name_lists_closest():
    with pytest.raises(ValueError, match="unknown model 'protopnet_resnt18'; did you mean 'protopnet_resnet18'"):
        protozoo.create_model("protopnet_resnt18")
    assert not protozoo.is_model("protopnet_resnt18")


def test_aliases_and_pretrained_listing(monkeypatch):
    monkeypatch.setattr(registry, "_aliases", {})
    monkeypatch.setitem(registry._pretrained, "protopnet_resnet18", dict(registry._pretrained["protopnet_resnet18"]))
    registry.register_pretrained(PretrainedCfg(architecture="protopnet_resnet18", tag="toy", file="/x"))
    registry.register_alias("toy-proto", "protopnet_resnet18.toy")
    assert protozoo.list_models("*toy*", pretrained=True) == ["protopnet_resnet18.toy"]
    assert "toy-proto" in protozoo.list_models("toy*", aliases=True)
    assert registry.resolve("toy-proto").name == "protopnet_resnet18.toy"
    assert registry.resolve("protopnet_resnet18").tag == "toy"  # a bare arch prefers trained weights
    with pytest.raises(ValueError, match="unknown architecture"):
        registry.register_alias("bad", "protopnet_nothing")
    with pytest.raises(ValueError, match="non-empty tag"):
        registry.register_pretrained(PretrainedCfg(architecture="protopnet_resnet18", file="/x"))


def test_pretrained_cfg_roundtrip():
    cfg = PretrainedCfg(architecture="a", tag="b", label_names=("x", "y"), input_size=(1, 64, 64))
    assert PretrainedCfg.from_dict(cfg.to_dict() | {"future_field": 1}) == cfg
    assert cfg.name == "a.b"
