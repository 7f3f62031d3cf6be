"""The zoo's trained models: each loads offline and reproduces its stored golden outputs.

Parametrized over ``protozoo.list_models(pretrained=True)`` (every ``weights/<arch>.<tag>/``), so a
refactor that changes any shipped model's outputs is caught, as timm's golden tests do.
"""

import warnings

import pytest
import torch
from safetensors.torch import load_file

import protozoo
from protozoo.hub import locate_weights
from protozoo.registry import resolve
from protozoo.zoo import CARD_NAME, GOLDEN_NAME, model_card, register_tags

TRAINED = protozoo.list_models(pretrained=True)


def golden_inputs(model, golden: dict) -> tuple:
    """The stored inputs in the order the model's family feeds them (``image``, or ``cc``, ``mlo``)."""
    return tuple(golden[f"input/{name}"] for name in protozoo.family_of(model).input_names)


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_model_reproduces_its_golden_outputs(name):
    folder = locate_weights(resolve(name))
    for file in ("config.json", "model.safetensors", "prototypes.json", "recipe.json", CARD_NAME, GOLDEN_NAME):
        assert (folder / file).is_file(), file
    assert (folder / "model.safetensors").stat().st_size <= 25 * 2**20
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trained model loads without any "untrained" warning
        model = protozoo.load(name)
    golden = load_file(str(folder / GOLDEN_NAME))
    with torch.no_grad():
        out = model(*golden_inputs(model, golden))
    torch.testing.assert_close(out.logits, golden["logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.min_distances, golden["min_distances"], atol=1e-4, rtol=1e-4)
    assert len(model.provenance) == model.num_prototypes
    assert model.pretrained_cfg.label_names and len(model.pretrained_cfg.label_names) == model.num_classes


@pytest.mark.parametrize("name", TRAINED + list(protozoo.list_aliases()))
def test_a_tag_or_alias_never_changes_the_architecture(name):
    """create_model(name) builds the architecture that load(name) loads: a tag names weights only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", protozoo.UntrainedWarning)
        loaded = protozoo.load(name)
    built = protozoo.create_model(name)
    assert built.model_args() == loaded.model_args()
    assert [k for k in built.state_dict()] == [k for k in loaded.state_dict()]
    assert all(built.state_dict()[k].shape == v.shape for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("name", TRAINED)
def test_model_card_says_what_it_was_trained_on(name):
    card = model_card(name)
    assert card is not None and name in card
    assert "not a clinical model" in card and "## Test metrics" in card and "test accuracy" in card
    assert f"python examples/build_zoo_model.py {name}" in card


def test_declared_tags_register_with_their_architecture():
    from protozoo import registry

    saved = {arch: dict(cfgs) for arch, cfgs in registry._pretrained.items()}
    try:
        row = dict(
            model_args=dict(num_classes=2, prototypes_per_class=1, in_chans=1),
            input_size=(1, 48, 48),
            label_names=("a", "b"),
        )
        assert register_tags({"protopnet_resnet18.unit_test": row}) == ["protopnet_resnet18.unit_test"]
        cfg = resolve("protopnet_resnet18.unit_test")
        assert (
            cfg.weights_dir == "protopnet_resnet18.unit_test"
            and cfg.hf_hub_id == "protozoo/protopnet_resnet18.unit_test"
        )
        assert cfg.input_size == (1, 48, 48) and len(cfg.mean) == 1 and cfg.label_names == ("a", "b")
        model = protozoo.create_model("protopnet_resnet18.unit_test")
        assert (model.config.num_classes, model.config.prototypes_per_class, model.config.in_chans) == (2, 1, 1)
        with pytest.raises(ValueError, match="unknown model"):
            register_tags({"not_a_model.tag": row})
    finally:
        registry._pretrained.clear()
        registry._pretrained.update(saved)
