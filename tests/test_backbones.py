"""Backbones stop at their feature stage: nothing past it is built or run, and the output is timm's."""

import pytest
import timm
import torch

from protozoo.backbones import Backbone, pruned_state_keys
from protozoo.serialization import load_strict

# (timm name, stage, input px): the wrapper kinds that used to run every block to the last stage
TRUNCATED = [
    ("tf_efficientnet_lite0", 3, 64),
    ("efficientnet_b0", 2, 64),
    ("mobilenetv1_100", 3, 64),
    ("mobilenetv2_100", 3, 64),
    ("legacy_xception", 3, 64),
    ("legacy_xception", 2, 64),
]


def untruncated(name: str, stage: int) -> torch.nn.Module:
    """timm's own features_only wrapper, as protozoo used it before truncation."""
    return timm.create_model(name, features_only=True, out_indices=(stage,), pretrained=False).eval()


def parameterised_modules_run(module: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(modules with their own parameters, how many of them ran in one forward pass)."""
    leaves = [m for m in module.modules() if any(True for _ in m.parameters(recurse=False))]
    ran = set()
    hooks = [m.register_forward_hook(lambda m, i, o: ran.add(id(m))) for m in leaves]
    with torch.no_grad():
        module(x)
    for hook in hooks:
        hook.remove()
    return len(leaves), len(ran)


@pytest.mark.parametrize("name,stage,size", TRUNCATED)
def test_truncated_backbone_equals_timm_and_runs_nothing_past_its_stage(name, stage, size):
    reference = untruncated(name, stage)
    backbone = Backbone(name, stage=stage).eval()
    assert backbone.pruned_keys, "this wrapper ran past its stage: truncation must drop layers"
    full_keys = set(reference.state_dict())
    assert set(backbone.body.state_dict()) == full_keys - backbone.pruned_keys
    # the same weights (the reference's), loaded from a state dict that still has the dropped layers
    backbone.load_state_dict({f"body.{k}": v for k, v in reference.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(backbone(x), reference(x)[-1])
    total, ran = parameterised_modules_run(backbone, x)
    assert ran == total  # every layer kept is used
    total_ref, ran_ref = parameterised_modules_run(reference, x)
    assert ran_ref == total_ref and total_ref > total  # the reference ran the layers past the stage


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224"])
def test_wrappers_that_already_stop_are_left_alone(name):
    backbone = Backbone(name, stage=2)
    assert backbone.pruned_keys == frozenset()


def test_training_truncated_backbone_has_gradients_everywhere():
    backbone = Backbone("tf_efficientnet_lite0", stage=3)
    backbone(torch.randn(2, 3, 64, 64)).square().mean().backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_weights_saved_before_truncation_load_strictly():
    import protozoo

    model = protozoo.create_model(
        "protopnet_efficientnet_lite0", num_classes=2, prototypes_per_class=1, feature_stage=3
    )
    old = {f"backbone.body.{k}": v for k, v in untruncated("tf_efficientnet_lite0", 3).state_dict().items()}
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")} | old
    assert pruned_state_keys(model) == set(state) - set(model.state_dict())
    load_strict(model, state, "old-file")  # no unexpected keys reported
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    with pytest.raises(ValueError, match="unexpected: backbone.body.blocks.9"):
        load_strict(model, state | {"backbone.body.blocks.9.weight": torch.zeros(1)}, "bad-file")


@pytest.mark.slow
def test_nasnet_stops_at_its_stage():
    reference = untruncated("nasnetalarge", 3)
    backbone = Backbone("nasnetalarge", stage=3).eval()
    backbone.load_state_dict({f"body.{k}": v for k, v in reference.state_dict().items()}, strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(backbone(x), reference(x)[-1])
    total, ran = parameterised_modules_run(backbone, x)
    assert ran == total
