"""protozoo.explain: contributions add up to the logit, heatmaps and boxes sit where the maps peak."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from explain_fixtures import push_by_hand, tiny_model  # tests/explain is on sys.path (prepend mode)

from protozoo.explanation import Explanation, explain, explain_batch, high_activation_box, upsample_maps
from protozoo.outputs import ProtoOutput
from protozoo.similarity import LOG_EPSILON


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    return tiny_model()


def test_contributions_are_similarity_times_weight_and_sum_to_the_logit(setup):
    model, items = setup
    x = items[0]["image"]
    e = explain(model, x, top_k=3)
    with torch.no_grad():
        out = model(x[None])
    c = int(out.logits.argmax())
    assert e.predicted == e.class_idx == c and e.predicted_name == model.pretrained_cfg.label_names[c]
    torch.testing.assert_close(e.contributions, out.similarities[0] * model.last_layer.weight.detach()[c])
    torch.testing.assert_close(e.contributions.sum(), out.logits[0, c], rtol=1e-5, atol=1e-5)
    assert e.logit == pytest.approx(float(out.logits[0, c]), abs=1e-5)
    torch.testing.assert_close(e.probabilities, out.logits[0].softmax(0))
    assert e.probability == pytest.approx(float(e.probabilities.max()))
    for ev in e.prototypes:
        assert ev.contribution == pytest.approx(ev.similarity * ev.weight, rel=1e-5)
        assert ev.weight == pytest.approx(float(model.last_layer.weight.detach()[c, ev.index]))
        assert ev.class_idx == int(model.prototype_class[ev.index]) and ev.source is None
    # The top-k are the k largest contributions, largest first.
    assert [ev.index for ev in e.prototypes] == e.contributions.topk(3).indices.tolist()


def test_requested_class_is_explained(setup):
    model, items = setup
    e = explain(model, items[0]["image"][None], top_k=2, class_idx=2)
    assert e.class_idx == 2 and e.class_name == "malignant"
    assert all(ev.weight == pytest.approx(float(model.last_layer.weight.detach()[2, ev.index])) for ev in e.prototypes)
    assert e.contributions.sum().item() == pytest.approx(e.logit, abs=1e-5)


def test_heatmap_is_the_bicubic_similarity_map_and_the_box_holds_its_peak(setup):
    model, items = setup
    x = items[3]["image"]
    e = explain(model, x, top_k=model.num_prototypes)
    with torch.no_grad():
        maps = model.similarity_maps(x[None])[0]  # (P, h, w), a second, independent path
    for ev in e.prototypes:
        assert ev.heatmap.shape == x.shape[-2:]
        torch.testing.assert_close(ev.heatmap, upsample_maps(maps[ev.index], tuple(x.shape[-2:])), rtol=1e-4, atol=1e-4)
        x0, y0, x1, y1 = ev.box
        y, xx = divmod(int(ev.heatmap.argmax()), ev.heatmap.shape[1])
        assert x0 <= xx < x1 and y0 <= y < y1
        hot = ev.heatmap >= torch.quantile(ev.heatmap.flatten(), 0.95)
        outside = hot.clone()
        outside[y0:y1, x0:x1] = False
        assert hot.any() and not outside.any()  # the box is the bounding box of the top 5%
        assert hot[y0, :].any() and hot[y1 - 1, :].any() and hot[:, x0].any() and hot[:, x1 - 1].any()


def test_high_activation_box_of_a_single_bump():
    yy, xx = torch.meshgrid(torch.arange(50.0), torch.arange(80.0), indexing="ij")
    heat = torch.exp(-((xx - 60) ** 2 + (yy - 12) ** 2) / 20)
    x0, y0, x1, y1 = high_activation_box(heat)
    assert x0 <= 60 < x1 and y0 <= 12 < y1
    assert (x1 - x0) * (y1 - y0) < 0.1 * heat.numel()


def test_source_comes_from_provenance_and_a_pushed_patch_matches_itself():
    torch.manual_seed(0)
    model, items = tiny_model()
    rows = push_by_hand(model, items, cell=(1, 2))
    p = 4  # class 2, copied from the first item of class 2
    item = [it for it in items if it["label"] == 2][0]
    e = explain(model, item["image"], top_k=model.num_prototypes, class_idx=2)
    ev = next(ev for ev in e.prototypes if ev.index == p)
    assert ev.source is rows[p] and ev.source["image_id"] == item["id"]
    assert ev.similarity == pytest.approx(torch.log(torch.tensor(1 / LOG_EPSILON)).item(), rel=1e-3)  # distance 0
    # The match is at the latent cell (1, 2): stride 16 -> input pixels y 16..32, x 32..48.
    y, x = divmod(int(ev.heatmap.argmax()), ev.heatmap.shape[1])
    assert 8 <= y < 40 and 24 <= x < 56


def test_batch_equals_single_and_mode_is_restored(setup):
    model, items = setup
    x = torch.stack([items[i]["image"] for i in range(3)])
    model.train()
    try:
        batch = explain_batch(model, x, top_k=2, class_idx=[None, 1, None])
        assert model.training
    finally:
        model.eval()
    assert len(batch) == 3 and all(isinstance(e, Explanation) for e in batch) and batch[1].class_idx == 1
    for i, e in enumerate(batch):
        single = explain(model, x[i], top_k=2, class_idx=[None, 1, None][i])
        assert [ev.index for ev in e.prototypes] == [ev.index for ev in single.prototypes]
        torch.testing.assert_close(e.contributions, single.contributions, rtol=1e-4, atol=1e-5)


def test_explaining_costs_one_forward_pass(setup):
    model, items = setup
    calls = []
    handle = model.backbone.register_forward_hook(lambda *args: calls.append(1))
    try:
        explain(model, items[0]["image"], top_k=3)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_bad_inputs_say_what_is_wrong(setup):
    model, items = setup
    with pytest.raises(ValueError, match="explain_batch"):
        explain(model, torch.stack([items[0]["image"]] * 2))
    with pytest.raises(ValueError, match="class indices"):
        explain_batch(model, items[0]["image"][None], class_idx=[0, 1])

    class Other(torch.nn.Module):
        def forward(self, x):
            return {"logits": x}

    with pytest.raises(TypeError, match="Other belongs to no registered model family"):
        explain_batch(Other(), items[0]["image"][None])

    @dataclass
    class NewHeadOutput(ProtoOutput):  # a head that combines its evidence differently
        extra: torch.Tensor | None = None

    class NewHead(torch.nn.Module):
        def forward(self, x):
            return NewHeadOutput(*model(x).__dict__.values())

    with pytest.raises(
        TypeError, match="NewHead belongs to no registered model family"
    ):  # never explained as a ProtoPNet
        explain_batch(NewHead(), items[0]["image"][None])
