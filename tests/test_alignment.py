"""Shallow-deep feature alignment (SDFA, Huang et al. 2023): the cost equals a plain loop, the tap
reads the forward's own features, the loop adds the term in the joint phase only, and training on
it aligns the deep features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import protozoo
from protozoo.data.collate import collate_items
from protozoo.data.synthetic import SyntheticParts
from protozoo.train import Recipe, fit
from protozoo.train.alignment import FeatureTap, alignment_cost, shallow_blocks
from protozoo.train.losses import LossWeights
from protozoo.train.schedule import DEFAULT_LR

SIZE = 64


def _loop_cost(activations, own, shallow, deep, threshold):
    """The cost by a plain loop: per own (image, prototype), the peak cell's similarity rows."""
    blocks = shallow_blocks(shallow, tuple(deep.shape[-2:]))
    costs = []
    for b in range(activations.shape[0]):
        d = deep[b].flatten(1)  # (C, hw)
        s = blocks[b].flatten(1)
        for p in range(activations.shape[1]):
            if not own[b, p]:
                continue
            m = int(activations[b, p].flatten().argmax())
            deep_row = F.cosine_similarity(d[:, m : m + 1], d, dim=0)  # (hw,)
            shallow_row = F.cosine_similarity(s[:, m : m + 1], s, dim=0)
            costs.append(F.relu((deep_row - shallow_row).abs() - threshold).mean())
    return torch.stack(costs).mean()


def test_alignment_cost_equals_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    activations = torch.rand(3, 4, 4, 4, generator=g)
    own = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    shallow, deep = torch.rand(3, 5, 16, 16, generator=g), torch.rand(3, 7, 4, 4, generator=g)
    got = alignment_cost(activations, own, shallow, deep, threshold=0.05)
    torch.testing.assert_close(got, _loop_cost(activations, own, shallow, deep, 0.05))
    # identical structure costs nothing: deep features that are the shallow blocks themselves
    same = shallow_blocks(shallow, (4, 4))
    assert alignment_cost(activations, own, shallow, same, threshold=0.0).item() == pytest.approx(0.0, abs=1e-6)


def test_shallow_blocks_is_space_to_depth():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    blocks = shallow_blocks(x, (2, 2))  # (2, 3*4*4, 2, 2)
    assert blocks.shape == (2, 48, 2, 2)
    assert torch.equal(blocks[1, :, 0, 1].reshape(3, 4, 4), x[1, :, 0:4, 4:8])


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_tap_reads_the_stride_4_stage_and_the_backbone_output(backbone):
    model = protozoo.create_model(f"protopnet_{backbone}", feature_stage=3, pretrained_backbone=False).eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad(), FeatureTap(model, 1) as tap:
        model(x)
        expected = model.backbone(x)
    assert tap.shallow.shape[-1] == SIZE // 4 and tap.deep.shape[-1] == SIZE // 16
    assert torch.equal(tap.deep, expected)
    with torch.no_grad():  # hooks are removed on exit
        model(torch.rand(2, 3, SIZE, SIZE))
    assert torch.equal(tap.deep, expected)


def test_tap_names_a_stage_past_the_models():
    model = protozoo.create_model("protopnet_resnet18", feature_stage=2, pretrained_backbone=False)
    with pytest.raises(ValueError, match="alignment_stage"):
        FeatureTap(model, 4)


def _fit_parts(tmp_path, alignment: float):
    torch.manual_seed(0)
    data = SyntheticParts("train", image_size=SIZE, num_samples=16, num_classes=2)
    model = protozoo.create_model(
        "protopnet_resnet18",
        num_classes=2,
        prototypes_per_class=2,
        prototype_dim=16,
        feature_stage=3,
        pretrained_backbone=False,
    )
    recipe = Recipe(
        epochs=8,
        warm_epochs=1,
        push_start=8,
        push_every=8,
        lr=DEFAULT_LR | {"backbone": 3e-3},
        last_layer_epochs=0,
        batch_size=8,
        loss=LossWeights(alignment=alignment, alignment_threshold=0.0),
        seed=0,
    )
    history = fit(model, data, recipe=recipe, out_dir=tmp_path / str(alignment), progress=False).history
    return model, collate_items([data[i] for i in range(16)]), history


def _cost(model, batch) -> float:
    """The cost on the batch, normalisation layers on batch statistics (as in training: the tiny
    random-init backbone's running statistics are not yet meaningful)."""
    from protozoo.evaluate._parts import own_prototypes

    model.train()
    with torch.no_grad(), FeatureTap(model, 1) as tap:
        out = model(batch["image"])
    own = own_prototypes(model, batch, "true")
    return alignment_cost(model.head.activation(out.distance_maps), own, tap.shallow, tap.deep, 0.0).item()


def test_fit_adds_the_term_in_the_joint_phase_only_and_it_aligns(tmp_path):
    aligned, batch, history = _fit_parts(tmp_path, alignment=20.0)
    rows = [row for row in history if row.get("kind") == "train"]
    assert {row["phase"] for row in rows} == {"warm", "joint"}
    assert all(("alignment" in row) == (row["phase"] == "joint") for row in rows), rows
    plain, _, plain_history = _fit_parts(tmp_path, alignment=0.0)
    assert not any("alignment" in row for row in plain_history)
    assert _cost(aligned, batch) < 0.8 * _cost(plain, batch)  # the same run without the term
