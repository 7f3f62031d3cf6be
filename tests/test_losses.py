"""ProtoPNet losses against plain per-image loops, and the recipe's phase plan."""

import pytest
import torch

import protozoo
from protozoo.train import LossWeights, Recipe, protopnet_loss
from protozoo.train.losses import cluster_cost, l1_wrong_class, orthogonality, own_class_mask, separation_cost


@pytest.fixture
def setup():
    model = protozoo.create_model("protopnet_resnet18", num_classes=3, prototypes_per_class=2, prototype_dim=8)
    min_d = torch.rand(5, 6) * 3  # (B, P)
    labels = torch.tensor([0, 2, 1, 2, 0])
    return model, min_d, labels


def test_cluster_and_separation_equal_loops(setup):
    model, min_d, labels = setup
    classes = model.prototype_class.tolist()
    own = own_class_mask(model.head.prototype_identity, labels)
    cluster = [min(min_d[b, p] for p in range(6) if classes[p] == labels[b]) for b in range(5)]
    separation = [min(min_d[b, p] for p in range(6) if classes[p] != labels[b]) for b in range(5)]
    assert cluster_cost(min_d, own).item() == pytest.approx(sum(cluster).item() / 5, rel=1e-6)
    assert separation_cost(min_d, own).item() == pytest.approx(sum(separation).item() / 5, rel=1e-6)


def test_l1_only_on_wrong_class_connections(setup):
    model, _, _ = setup
    weight = model.last_layer.weight  # (K, P): 1 own class, -0.5 others
    expected = sum(abs(weight[k, p].item()) for k in range(3) for p in range(6) if model.prototype_class[p] != k)
    assert l1_wrong_class(weight, model.head.prototype_identity).item() == pytest.approx(expected)
    assert expected == pytest.approx(12 * 0.5)


def test_orthogonality_zero_for_orthogonal_prototypes():
    protos = torch.zeros(4, 3)
    protos[0, 0] = protos[1, 1] = protos[2, 2] = protos[3, 0] = 2.0  # class 0: e0,e1; class 1: e2,e0
    assert orthogonality(protos, 2).item() == pytest.approx(0.0)
    protos[1] = protos[0]
    assert orthogonality(protos, 2).item() == pytest.approx(2.0)  # off-diagonal 1 twice


def test_weighted_total_and_default_coefficients(setup):
    model, _, labels = setup
    weights = LossWeights()
    assert (weights.cross_entropy, weights.cluster, weights.separation, weights.l1) == (1.0, 0.8, -0.08, 1e-4)
    output = model(torch.randn(5, 3, 64, 64))
    total, terms = protopnet_loss(model, output, {"label": labels}, weights)
    expected = terms["cross_entropy"] + 0.8 * terms["cluster"] - 0.08 * terms["separation"] + 1e-4 * terms["l1"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert "orthogonality" not in terms
    total.backward()
    assert model.prototypes.grad is not None


def test_plan_phases_push_and_last_layer():
    recipe = Recipe(epochs=6, warm_epochs=2, push_start=4, push_every=2, last_layer_epochs=3)
    plan = recipe.plan()
    kinds = [s.phase if s.kind == "train" else "PUSH" for s in plan]
    assert kinds == (
        ["warm"] * 2 + ["joint"] * 2 + ["PUSH"] + ["last_layer"] * 3 + ["joint"] * 2 + ["PUSH"] + ["last_layer"] * 3
    )
    assert [s.epoch for s in plan if s.kind == "train"] == list(range(12))
    assert "plan: warm x2 -> joint x2 -> PUSH -> last_layer x3" in recipe.describe()


def test_recipe_roundtrip_and_validation(tmp_path):
    recipe = Recipe(epochs=3, warm_epochs=1, unique_source="per_class", loss=LossWeights(cluster=0.5))
    path = tmp_path / "recipe.json"
    path.write_text(__import__("json").dumps(recipe.to_dict()))
    assert Recipe.load(path) == recipe
    with pytest.raises(ValueError, match="unknown recipe fields \\['epoch'\\]"):
        Recipe.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="unique_source"):
        Recipe(unique_source="all")
