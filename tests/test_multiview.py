"""The multi-view (CC/MLO) head: shapes, the missing-view rule, cross-attention, co-occurrence,
the one-tensor error, its loss and training on synthetic-mammo."""

import math
import re

import pytest
import torch

import protozoo
from protozoo.data.collate import collate_items
from protozoo.data.synthetic import SyntheticMammo
from protozoo.data.views import FlattenViews
from protozoo.heads.multiview import cooccurrence_maps, cooccurrence_scores, geometric_mean
from protozoo.models.multiview import TWO_VIEW_CALL
from protozoo.train import Recipe, fit
from protozoo.train.tasks import task_for

TINY = dict(prototypes_per_class=2, prototype_dim=16, attention_dim=8, projection_dim=16, feature_stage=3)
SIZE = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return protozoo.create_model("protopnet_multiview_resnet18", **TINY).eval()


@pytest.fixture(scope="module")
def views():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, 1, SIZE, SIZE, generator=generator), torch.rand(3, 1, SIZE, SIZE, generator=generator)


def test_defaults_and_output_shapes(model, views):
    assert model.config.in_chans == 1 and model.num_classes == 3 and model.views == ("cc", "mlo")
    with torch.no_grad():
        out = model(*views)
    p, (h, w) = model.num_prototypes, model.latent(views[0]).shape[-2:]
    assert out.logits.shape == (3, 3)
    assert out.similarities.shape == out.min_distances.shape == out.cooccurrence.shape == (3, p)
    assert out.view_similarities.shape == out.view_min_distances.shape == (3, 2, p)
    assert out.view_distance_maps.shape == (3, 2, p, h, w)
    assert torch.equal(out.distance_maps, out.view_distance_maps[:, 0])
    assert out.views_present.all() and out.consistency.shape == ()
    assert torch.equal(out.similarities, out.view_similarities.amax(dim=1))
    assert (out.cooccurrence >= 0).all()


def test_single_view_methods_read_one_view(model, views):
    cc = views[0]
    with torch.no_grad():
        both = model(*views)
        maps = model.similarity_maps(cc)  # (B, P, H, W)
    assert maps.shape == both.view_distance_maps[:, 0].shape
    torch.testing.assert_close(maps.amax(dim=(2, 3)), both.view_similarities[:, 0])


def test_one_tensor_call_shows_the_two_view_call(model, views):
    with pytest.raises(ValueError, match=re.escape(TWO_VIEW_CALL)):
        model(views[0])
    with pytest.raises(ValueError, match="both views are None"):
        model(None, None)


@pytest.mark.parametrize("missing", [0, 1])
def test_missing_view_is_masked(model, views, missing):
    present_view = views[1 - missing]
    args = [None, None]
    args[1 - missing] = present_view
    with torch.no_grad():
        single = model.similarity_maps(present_view).amax(dim=(2, 3))  # (B, P), that view alone
        out = model(*args)
    torch.testing.assert_close(out.similarities, single)
    assert not out.views_present[:, missing].any()
    assert (out.cooccurrence == 0).all() and out.consistency is None
    assert (out.view_similarities[:, missing] == 0).all()
    assert all(torch.isfinite(t).all() for t in (out.logits, out.similarities, out.min_distances, out.distance_maps))


def test_per_sample_present_mask(views):
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_multiview_resnet18", **TINY).eval()
    present = torch.tensor([[True, False], [True, True], [False, True]])
    out = model(*views, present=present)
    with torch.no_grad():
        cc_alone = model.similarity_maps(views[0]).amax(dim=(2, 3))
        mlo_alone = model.similarity_maps(views[1]).amax(dim=(2, 3))
        full = model(*views)
    torch.testing.assert_close(out.similarities[0], cc_alone[0])
    torch.testing.assert_close(out.similarities[2], mlo_alone[2])
    torch.testing.assert_close(out.similarities[1], full.similarities[1])
    assert (out.cooccurrence[[0, 2]] == 0).all() and (out.cooccurrence[1] > 0).all()
    torch.testing.assert_close(out.distance_maps[2], out.view_distance_maps[2, 1])
    (out.logits.sum() + out.consistency).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match=r"breasts \[0\]"):
        model(*views, present=torch.tensor([[False, False], [True, True], [True, True]]))


def test_cross_attention_rows_sum_to_one(model, views):
    with torch.no_grad():
        f_cc, f_mlo = model.backbone(views[0]), model.backbone(views[1])
        attention = model.cross_view.attention(f_cc, f_mlo)
    hw = f_cc.shape[2] * f_cc.shape[3]
    assert attention.shape == (3, hw, hw)
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(3, hw))


def test_cooccurrence_equals_a_loop_over_locations(model, views):
    with torch.no_grad():
        out = model(*views)
        f = [model.backbone(v) for v in views]
        s = [model.similarity_maps(v).clamp_min(0).flatten(2) for v in views]  # (B, P, HW) each
        directions = []
        for a, b in ((0, 1), (1, 0)):
            attention = model.cross_view.attention(f[a], f[b])  # (B, HW, HW)
            batch, protos, locations = s[a].shape
            scores = torch.zeros(batch, protos)
            for n in range(batch):
                for p in range(protos):
                    best = 0.0
                    for i in range(locations):
                        c = sum(attention[n, i, j] * s[b][n, p, j] for j in range(locations))
                        best = max(best, math.sqrt(s[a][n, p, i] * c + 1e-6) - math.sqrt(1e-6))
                    scores[n, p] = best
            directions.append(scores)
            torch.testing.assert_close(cooccurrence_scores(s[a], cooccurrence_maps(attention, s[b])), scores)
    torch.testing.assert_close(out.cooccurrence, (directions[0] + directions[1]) / 2)


def test_geometric_mean_is_zero_when_either_is_zero_with_finite_gradient():
    a = torch.tensor([0.0, 4.0, 0.0], requires_grad=True)
    g = geometric_mean(a, torch.tensor([9.0, 0.0, 0.0]))
    assert torch.equal(g, torch.zeros(3))
    g.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_linear_similarity_is_refused():
    with pytest.raises(ValueError, match="similarity='log'"):
        protozoo.create_model("protopnet_multiview_resnet18", similarity="linear", **TINY)


def test_flatten_views_and_task_loss():
    data = SyntheticMammo("train", image_size=SIZE, num_samples=3)
    flat = FlattenViews(data)
    assert len(flat) == 6
    item, breast = flat[3], data[1]
    assert item["id"] == f"{breast['id']}/mlo" and item["label"] == breast["label"]
    assert torch.equal(item["image"], breast["views"]["mlo"]["image"])

    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_multiview_resnet18", **TINY)
    batch = collate_items([data[i] for i in range(3)])
    task = task_for(model)
    output = task.forward(model, batch)
    loss, terms = task.loss(model, output, batch, Recipe().loss, "joint")
    assert {"cross_entropy", "cluster", "separation", "l1", "consistency"} <= set(terms)
    assert terms["consistency"] == pytest.approx(output.consistency.item())
    loss.backward()
    assert model.cross_view.query.weight.grad.abs().sum() > 0
    assert model.cross_view.projector[0].weight.grad.abs().sum() > 0
    groups = model.parameter_groups()
    assert groups["last_layer"][-1] is model.cross_view.cooccurrence_layer.weight
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))


def _mammo(split: str, n: int) -> SyntheticMammo:
    return SyntheticMammo(split, image_size=SIZE, num_samples=n, lesion_size=3.0, lesion_contrast=0.5)


def _fit(epochs: int, samples: int, batch_size: int, push: bool):
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_multiview_resnet18", **TINY)
    train = _mammo("train", samples)
    recipe = Recipe(
        epochs=epochs,
        warm_epochs=1,
        push_start=epochs if push else epochs + 1,
        push_at_end=push,
        last_layer_epochs=1,
        batch_size=batch_size,
        push_every=epochs,
        lr={"backbone": 1e-3, "add_on": 3e-3, "prototypes": 3e-3, "last_layer": 1e-3},
    )
    result = fit(
        model,
        train,
        recipe=recipe,
        val_data=_mammo("val", 60),
        push_data=FlattenViews(train),
        progress=False,
        log=lambda line: None,
    )
    return model, result.history


def test_fit_trains():
    _, history = _fit(epochs=2, samples=24, batch_size=12, push=False)
    assert [row["phase"] for row in history] == ["warm", "joint"]
    assert all(math.isfinite(row["loss"]) and math.isfinite(row["consistency"]) for row in history)


@pytest.mark.slow
def test_longer_fit_lowers_the_joint_loss_and_pushes_single_views():
    model, history = _fit(epochs=6, samples=128, batch_size=8, push=True)
    joint = [row["loss"] for row in history if row.get("phase") == "joint"]
    assert joint[-1] < joint[0]
    assert {row["image_id"].rsplit("/", 1)[1] for row in model.provenance} <= {"cc", "mlo"}
