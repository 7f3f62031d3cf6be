"""The lesion-linked AMD head: lesion prototypes, a diagnosis from the lesion logits only, lesion
maps, the lesion-label check, its loss and a training smoke run. That it learns the lesions and the
diagnosis is tests/test_learning.py's slow test (a lesion BCE that merely falls proves little: the
lesion biases already start at the base rate)."""

import math
import re

import pytest
import torch

import protozoo
from protozoo.data.collate import collate_items
from protozoo.data.synthetic import FUNDUS_LESIONS, SyntheticFundus
from protozoo.family import family_of
from protozoo.train import PHASES, Recipe, fit
from protozoo.train.losses import LossWeights
from protozoo.train.losses_lesion import multilabel_cluster_cost, multilabel_separation_cost
from protozoo.train.tasks import task_for

TINY = dict(prototypes_per_class=2, prototype_dim=16, feature_stage=3)
SIZE = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return protozoo.create_model("protopnet_lesion_resnet18", **TINY).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def test_defaults_lesions_as_prototype_classes(model, images):
    assert model.lesion_names == FUNDUS_LESIONS and model.num_lesions == 5
    assert model.config.in_chans == 3 and model.num_classes == 2 and model.prototypes_per_lesion == 2
    assert model.prototype_class.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    with torch.no_grad():
        out = model(images)
    assert out.logits.shape == (2, 2) and out.lesion_logits.shape == (2, 5)
    assert out.similarities.shape == out.min_distances.shape == (2, 10)
    torch.testing.assert_close(out.lesion_logits, out.similarities @ model.last_layer.weight.T + model.head.lesion_bias)


def test_diagnosis_is_a_function_of_the_lesion_logits_only(images):
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", **TINY).eval()
    with torch.no_grad():
        out = model(images)
        assert torch.equal(out.logits, model.head.diagnose(out.lesion_logits))
        assert (model.head.diagnosis.weight >= 0).all()
        # Cut prototype 0 from the lesion logits, then move it: its similarity changes, the lesion
        # logits do not, so neither may the diagnosis.
        model.last_layer.weight[:, 0] = 0
        before = model(images)
        model.head.prototypes[0] += 0.5
        after = model(images)
    assert not torch.allclose(before.similarities[:, 0], after.similarities[:, 0])
    torch.testing.assert_close(after.lesion_logits, before.lesion_logits)
    torch.testing.assert_close(after.logits, before.logits)


def test_diagnosis_is_monotone_in_the_lesions():
    """A found lesion can only raise AMD: the healthy class takes no lesion evidence, so raising any
    lesion's logit never lowers the AMD logit nor raises non-AMD's, even after training moved V."""
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", pretrained_backbone=False, **TINY)
    with torch.no_grad():
        model.head.diagnosis.raw_weight.normal_(0, 3)  # any learnt weights
        weight = model.head.diagnosis.weight  # (K, L)
        assert torch.equal(weight[0], torch.zeros(model.num_lesions)) and (weight[1] > 0).all()
        lesion_logits = torch.randn(64, model.num_lesions, generator=torch.Generator().manual_seed(2))
        base = model.head.diagnose(lesion_logits)
        for lesion in range(model.num_lesions):
            raised = lesion_logits.clone()
            raised[:, lesion] += torch.rand(64, generator=torch.Generator().manual_seed(lesion)) * 4
            after = model.head.diagnose(raised)
            assert (after[:, 1] >= base[:, 1]).all(), "a rising lesion lowered the AMD logit"
            torch.testing.assert_close(after[:, 0], base[:, 0])  # non-AMD is its bias alone
            assert ((after[:, 1] - after[:, 0]) >= (base[:, 1] - base[:, 0])).all()


def test_healthy_class_is_checked():
    with pytest.raises(ValueError, match="healthy_class"):
        protozoo.create_model("protopnet_lesion_resnet18", healthy_class=2, pretrained_backbone=False, **TINY)


def test_lesion_maps_at_input_size_in_unit_range(model, images):
    with torch.no_grad():
        maps = model.lesion_maps(images)
    assert maps.shape == (2, 5, SIZE, SIZE)
    assert maps.min() >= 0 and maps.max() <= 1
    for image_maps in maps:
        assert image_maps.min() == 0 and image_maps.max() == pytest.approx(1)


def test_wrong_width_lesion_labels_name_the_expected_lesions(model, images):
    out = model(images)
    batch = {"label": torch.tensor([0, 1]), "lesions": torch.zeros(2, 3)}
    expected = re.escape("expected 5 lesion labels per image in the order ['drusen', 'haemorrhage', ") + ".*got 3"
    with pytest.raises(ValueError, match=expected):
        task_for(model).loss(model, out, batch, LossWeights(), "joint")


def test_multilabel_cluster_and_separation_equal_loops():
    distances = torch.rand(4, 3)
    present = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
    pairs = [(b, lesion) for b in range(4) for lesion in range(3)]
    cluster = [distances[b, lesion] for b, lesion in pairs if present[b, lesion]]
    separation = [distances[b, lesion] for b, lesion in pairs if not present[b, lesion]]
    torch.testing.assert_close(multilabel_cluster_cost(distances, present), torch.stack(cluster).mean())
    torch.testing.assert_close(multilabel_separation_cost(distances, present), torch.stack(separation).mean())


def test_lesion_pooling_pulls_each_prototype_to_its_own_lesion_cells():
    """With lesion_pooling the cluster cost of (image, lesion l) is the smallest distance from an l
    prototype to a cell of an l lesion (lesion_cells per type), by a plain loop; the separation cost
    still pools every cell."""
    from protozoo.foreground import lesion_cells

    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", pretrained_backbone=False, **TINY).eval()
    data = SyntheticFundus("train", image_size=SIZE, num_samples=8, lesion_size=2.0)
    batch = collate_items([data[i] for i in range(8)])
    task = task_for(model)
    output = task.forward(model, batch)
    _, plain = task.loss(model, output, batch, LossWeights(l1=0), "joint")
    _, pooled = task.loss(model, output, batch, LossWeights(l1=0, lesion_pooling=True), "joint")
    maps = output.distance_maps  # (B, P, h, w)
    cells = lesion_cells(batch, tuple(maps.shape[-2:]), per_type=True)  # (B, L, h, w)
    present = batch["lesions"] > 0.5
    pairs = []
    for b in range(8):
        for lesion in range(len(FUNDUS_LESIONS)):
            if present[b, lesion]:
                assert not cells[b, lesion].all()  # narrowed to the lesion
                own = (model.prototype_class == lesion).nonzero().flatten()
                pairs.append(min(maps[b, p][cells[b, lesion]].min() for p in own))
    assert len(pairs) >= 8 and (present.sum(dim=1) > 1).any()  # several lesions on one eye, too
    assert pooled["cluster"] == pytest.approx(torch.stack(pairs).mean().item(), rel=1e-6)
    assert pooled["cluster"] >= plain["cluster"]  # the minimum over fewer cells
    assert pooled["separation"] == pytest.approx(plain["separation"], rel=1e-6)


def test_task_loss_terms_and_parameter_groups():
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", **TINY)
    data = SyntheticFundus("train", image_size=SIZE, num_samples=4)
    batch = collate_items([data[i] for i in range(4)])
    task = task_for(model)
    loss, terms = task.loss(model, task.forward(model, batch), batch, LossWeights(), "joint")
    assert set(terms) == {"lesion", "cross_entropy", "cluster", "separation", "l1"}
    loss.backward()
    assert model.head.lesion_bias.grad is not None and model.head.diagnosis.raw_weight.grad is not None
    groups = model.parameter_groups()
    readout = {id(p) for p in groups["readout"]}  # trains in every phase
    assert {id(model.head.lesion_bias), id(model.head.diagnosis.raw_weight), id(model.last_layer.weight)} <= readout
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))
    assert all("readout" in PHASES[phase].trainable for phase in ("warm", "joint", "last_layer"))
    # lesion prototypes are pushed by the multi-hot lesion labels: the family's labels are the lesions
    assert torch.equal(family_of(model).resolved("labels")(batch), batch["lesions"])


def _fit(epochs: int, samples: int, batch_size: int):
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", **TINY)
    recipe = Recipe(
        epochs=epochs,
        warm_epochs=1,
        batch_size=batch_size,
        push_start=epochs + 1,
        push_at_end=False,
        lr={"backbone": 1e-3, "add_on": 1e-2, "prototypes": 3e-3, "last_layer": 1e-3},
        warm_lr={"add_on": 1e-2, "prototypes": 3e-3},
    )
    val = SyntheticFundus("val", image_size=SIZE, num_samples=60)
    train = SyntheticFundus("train", image_size=SIZE, num_samples=samples)
    return fit(model, train, recipe=recipe, val_data=val, progress=False, log=lambda line: None).history


def test_fit_trains_without_push():
    history = _fit(epochs=2, samples=32, batch_size=16)
    assert [row["phase"] for row in history] == ["warm", "joint"]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in history)


def test_push_puts_each_lesion_prototype_on_an_image_with_that_lesion():
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", **TINY).eval()
    data = SyntheticFundus("train", image_size=SIZE, num_samples=64)  # every lesion type appears
    loader = torch.utils.data.DataLoader(data, batch_size=8, collate_fn=collate_items)
    result = protozoo.push_prototypes(model, loader)  # the family pushes by the multi-hot lesion labels
    items = {data[i]["id"]: data[i] for i in range(len(data))}
    for row in result.provenance:
        item = items[row["image_id"]]
        lesion = int(model.prototype_class[row["prototype"]])
        assert item["lesions"][lesion] == 1, (row["prototype"], model.lesion_names[lesion])
        h, w = row["feature_hw"]
        with torch.no_grad():
            z = model.latent(item["image"][None])[0, :, h, w]
        assert (z - model.prototypes[row["prototype"]]).abs().max() < 1e-5


def test_lesions_start_absent_at_their_prior_and_features_are_standardised():
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", lesion_prior=0.2, **TINY)
    torch.testing.assert_close(model.head.lesion_bias, torch.full((5,), math.log(0.2 / 0.8)))
    assert isinstance(model.head.add_on[0], torch.nn.BatchNorm2d)  # add_on_norm is the lesion default
    plain = protozoo.create_model("protopnet_resnet18", **TINY)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.head.add_on)  # ProtoPNet: the paper's add-on
    with pytest.raises(ValueError, match="lesion_prior must lie strictly between 0 and 1"):
        protozoo.create_model("protopnet_lesion_resnet18", lesion_prior=1.0, **TINY)


def test_lesion_aurocs_equal_a_plain_loop(model):
    from protozoo.evaluate import binary_auroc, lesion_aurocs

    data = SyntheticFundus("val", image_size=SIZE, num_samples=24)
    scores = lesion_aurocs(model, data, batch_size=5)
    assert list(scores) == model.lesion_names
    logits, labels = [], []
    with torch.no_grad():
        for i in range(len(data)):
            logits.append(model(data[i]["image"][None]).lesion_logits[0])
            labels.append(data[i]["lesions"])
    logits, labels = torch.stack(logits), torch.stack(labels)
    for lesion, name in enumerate(model.lesion_names):
        expected = binary_auroc(logits[:, lesion], labels[:, lesion] > 0.5)
        assert scores[name] == pytest.approx(expected, nan_ok=True, abs=1e-6)
