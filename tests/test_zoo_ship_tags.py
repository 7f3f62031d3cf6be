"""Tags mean weights: every declared tag (protozoo/zoo_tags.py) agrees with its weights' config.json.

``create_model(tag)`` builds the architecture of the declaration, ``load(tag)`` reads config.json:
the two must be one architecture, fed the same way, or the tag names another model than its weights.
"""

import json

import pytest

import protozoo
from protozoo.hub import CONFIG_NAME, check_model_args, locate_weights
from protozoo.registry import resolve
from protozoo.zoo_tags import TAGS

TRAINED = protozoo.list_models(pretrained=True)


def test_every_declared_tag_is_a_trained_model():
    assert sorted(TAGS) == TRAINED


@pytest.mark.parametrize("name", sorted(TAGS))
def test_declaration_matches_the_weights_config(name):
    config = json.loads((locate_weights(resolve(name)) / CONFIG_NAME).read_text())
    arch = resolve(name).architecture
    declared = TAGS[name]["model_args"]
    check_model_args(arch, declared, f"protozoo/zoo_tags.py[{name!r}]")  # the checks a config.json passes
    saved = config["model_args"]
    assert config["architecture"] == arch
    assert {k: saved.get(k) for k in declared} == declared  # every declared argument is the saved one

    built = protozoo.create_model(name)
    loaded = protozoo.load(name)
    assert built.model_args() == loaded.model_args()  # undeclared arguments: the same defaults
    for key in (
        "input_size",
        "mean",
        "std",
        "interpolation",
        "crop_pct",
        "crop_mode",
        "label_names",
        "license",
        "description",
        "paper",
    ):  # how the tag is fed: declare crop_mode/crop_pct when training changed them
        assert getattr(built.pretrained_cfg, key, None) == getattr(loaded.pretrained_cfg, key, None), key
    assert loaded.pretrained_cfg.hf_hub_id == resolve(name).hf_hub_id and "/" in resolve(name).hf_hub_id


def test_pretrained_true_loads_the_tags_weights():
    name = "protopnet_efficientnet_lite0.synth_parts"
    model = protozoo.create_model(name, pretrained=True)
    loaded = protozoo.load(name)
    assert model.training  # create_model returns a model in training mode, as timm's does
    assert all((model.state_dict()[k] == v).all() for k, v in loaded.state_dict().items())
