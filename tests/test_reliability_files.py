"""Issue #15, model files: a config.json or prototypes.json is checked before anything is built or
read on its say-so; changed weight bytes are caught by the recorded checksum."""

import json

import pytest
import torch

import protozoo
from protozoo.hub import CHECKSUM_KEY
from protozoo.serialization import WeightFileError

SMALL = dict(backbone="test_resnet", num_classes=3, prototypes_per_class=2, prototype_dim=8)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_resnet18", **SMALL).eval()
    model.provenance = [
        {"prototype": p, "class": int(c), "image_id": f"img{p}"} for p, c in enumerate(model.prototype_class.tolist())
    ]
    return model, model.save_pretrained(tmp_path / "model")


def edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def set_arg(key, value):
    def change(config):
        if "." in key:
            outer, inner = key.split(".")
            config["model_args"][outer][inner] = value
        else:
            config["model_args"][key] = value

    return change


# (what the config says, the error it must give: the file and the key are named)
BAD_CONFIGS = [
    (
        set_arg("backbone_kwargs.checkpoint_path", "/etc/passwd"),
        r"config\.json.*backbone_kwargs\.checkpoint_path.*not allowed",
    ),
    (set_arg("backbone_kwargs.pretrained", True), r"config\.json.*backbone_kwargs\.pretrained.*not allowed"),
    (set_arg("backbone_kwargs.pretrained_cfg_overlay", {"file": "x.pth"}), r"config\.json.*pretrained_cfg_overlay"),
    (set_arg("backbone_kwargs.act_layer", "torch.nn.ReLU"), r"config\.json.*backbone_kwargs\.act_layer"),
    (set_arg("backbone_kwargs.drop_rate", "0.1"), r"config\.json.*backbone_kwargs\.drop_rate.*rate"),
    (set_arg("backbone", "hf-hub:someone/evil"), r"config\.json.*model_args\.backbone.*timm model name"),
    (set_arg("backbone", "/tmp/model.pth"), r"config\.json.*model_args\.backbone"),
    (set_arg("num_classes", 0), r"config\.json.*num_classes must be an integer >= 1, not 0"),
    (set_arg("num_classes", -1), r"config\.json.*num_classes must be an integer >= 1, not -1"),
    (set_arg("num_classes", "3"), r"config\.json.*num_classes must be an integer >= 1, not '3'"),
    (set_arg("num_classes", True), r"config\.json.*num_classes"),
    (set_arg("prototypes_per_class", -2), r"config\.json.*prototypes_per_class"),
    (set_arg("prototype_dim", 0), r"config\.json.*prototype_dim"),
    (set_arg("in_chans", 0), r"config\.json.*in_chans"),
    (set_arg("feature_stage", 99), r"config\.json.*model_args do not build"),
    (set_arg("feature_stage", "last"), r"config\.json.*feature_stage must be an integer"),
    (set_arg("num_classes", 10**5), r"config\.json.*head would hold .* parameters"),
    (set_arg("prototype_dim", 10**9), r"config\.json.*head would hold"),
    (set_arg("colour", "blue"), r"config\.json.*unknown architecture arguments \['colour'\]"),
    (set_arg("arch", "protopnet_vgg16"), r"config\.json.*model_args\.arch"),
    (lambda c: c.__setitem__("pretrained_cfg", None), r"config\.json.*pretrained_cfg must be an object"),
    (lambda c: c["pretrained_cfg"].__setitem__("input_size", [3, 0, 64]), r"config\.json.*input_size"),
    (lambda c: c["pretrained_cfg"].__setitem__("std", [0, 1, 1]), r"config\.json.*std"),
    (lambda c: c.__setitem__("architecture", "no_such_net"), r"config\.json.*no_such_net"),
    (lambda c: c.__setitem__("architecture", 5), r"config\.json.*architecture"),
    (lambda c: c.__setitem__("model_args", [1, 2]), r"config\.json.*model_args must be an object"),
]


@pytest.mark.parametrize("change, message", BAD_CONFIGS)
def test_bad_config_values_are_refused_naming_the_file_and_key(saved, change, message):
    _, folder = saved
    edit_config(folder, change)
    with pytest.raises(WeightFileError, match=message):
        protozoo.load(str(folder))


def test_allowed_backbone_rates_still_load(saved):
    _, folder = saved
    edit_config(folder, set_arg("backbone_kwargs.drop_rate", 0.1))
    assert protozoo.load(str(folder)).config.backbone_kwargs == {"drop_rate": 0.1}


def test_no_file_is_opened_for_a_config_naming_a_checkpoint(saved, tmp_path, monkeypatch):
    _, folder = saved
    target = tmp_path / "victim.pth"
    torch.save({"x": torch.zeros(1)}, target)
    edit_config(folder, set_arg("backbone_kwargs.checkpoint_path", str(target)))
    opened = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(a) or real_load(*a, **k))
    with pytest.raises(WeightFileError):
        protozoo.load(str(folder))
    assert opened == []


def test_checksum_is_recorded_and_changed_bytes_are_caught(saved):
    model, folder = saved
    config = json.loads((folder / "config.json").read_text())
    assert len(config[CHECKSUM_KEY]) == 64
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\xff" * 8  # inside the last tensor: the file still parses, the values are NaN
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightFileError, match=r"model\.safetensors.*corrupted or was changed"):
        protozoo.load(str(folder))


def test_a_config_without_checksum_from_older_saves_loads(saved):
    model, folder = saved
    edit_config(folder, lambda c: c.pop(CHECKSUM_KEY))
    reloaded = protozoo.load(str(folder))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(x).logits, model(x).logits)


def test_save_into_a_pushed_models_folder_drops_its_prototypes_json(saved):
    _, folder = saved
    assert (folder / "prototypes.json").is_file()
    fresh = protozoo.create_model("protopnet_resnet18", **SMALL)
    fresh.save_pretrained(folder)
    assert not (folder / "prototypes.json").exists()
    assert protozoo.load(str(folder)).provenance is None


def rows_of(folder):
    return json.loads((folder / "prototypes.json").read_text())


# (how prototypes.json is damaged, the error)
BAD_PROVENANCE = [
    (lambda f: (f / "prototypes.json").write_text('[{"prototype": 0,'), r"prototypes\.json.*not valid JSON"),
    (lambda f: (f / "prototypes.json").write_text('{"a": 1}'), r"prototypes\.json.? must be a list"),
    (
        lambda f: (f / "prototypes.json").write_text(json.dumps(rows_of(f)[:-1])),
        r"prototypes\.json.? has 5 rows but the model has 6",
    ),
    (
        lambda f: (f / "prototypes.json").write_text(json.dumps(rows_of(f)[::-1])),
        r"prototypes\.json.?: row 0 describes prototype 5",
    ),
    (
        lambda f: (f / "prototypes.json").write_text(json.dumps([r | {"class": 2} for r in rows_of(f)])),
        r"prototypes\.json.?: row 0 says class 2",
    ),
    (lambda f: (f / "prototypes.json").write_text(json.dumps([1] * 6)), r"prototypes\.json.?: row 0 is not an object"),
]


@pytest.mark.parametrize("damage, message", BAD_PROVENANCE)
def test_a_garbled_or_foreign_prototypes_json_is_named(saved, damage, message):
    _, folder = saved
    damage(folder)
    with pytest.raises(WeightFileError, match=message):
        protozoo.load(str(folder))


BAD_CALLS = [
    (dict(num_classes=10**5), r"create_model\('protopnet_resnet18'\): the head would hold 1e\+11 parameters"),
    (dict(num_classes=0), r"create_model\('protopnet_resnet18'\): num_classes must be an integer >= 1, not 0"),
    (dict(prototypes_per_class=-1), r"prototypes_per_class must be an integer >= 1"),
    (dict(prototypes_per_class="3"), r"prototypes_per_class must be an integer >= 1, not '3'"),
    (dict(colour="blue"), r"unknown architecture arguments \['colour'\]"),
]


@pytest.mark.parametrize("overrides, message", BAD_CALLS)
def test_absurd_or_wrong_create_model_arguments_are_refused_before_allocation(overrides, message):
    with pytest.raises(ValueError, match=message):
        protozoo.create_model("protopnet_resnet18", backbone="test_resnet", **overrides)


def test_load_overrides_are_checked_too(saved):
    _, folder = saved
    with pytest.raises(ValueError, match=r"load\(.*num_classes must be an integer >= 1, not 0"):
        protozoo.load(str(folder), num_classes=0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"config\.json.* is not a protozoo config"),
        ("{}", r"config\.json.* is not a protozoo config"),
        ('{"architecture": 3}', r"config\.json.*architecture must be a registered name"),
    ],
)
def test_fine_tuning_from_a_folder_with_a_bad_config_names_it(tmp_path, text, message):
    from protozoo.train.session import prepare_run

    (tmp_path / "config.json").write_text(text)
    with pytest.raises(WeightFileError, match=message):
        prepare_run(str(tmp_path), "synthetic-parts", image_size=32, num_samples=4)


def test_fine_tuning_from_a_folder_without_config_names_it(tmp_path):
    from protozoo.train.session import prepare_run

    with pytest.raises(FileNotFoundError, match=r"config\.json.* not found"):
        prepare_run(str(tmp_path), "synthetic-parts", image_size=32, num_samples=4)
