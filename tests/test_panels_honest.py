"""The pictures tell the whole decision: what is drawn and written is read back and checked against the model.

Panels: the rows plus "all other prototypes" add up to the score the header names; a BRAIx panel
names each branch's decision as the branch decides it, and labels its rows the prototype
branch's; one colour scale for every heatmap of a panel. Lesion pictures read "AMD because: ..."
from the head's weights and never count a lesion for the healthy class; the multi-view panel has
a training-patch column; the demo's report lists true labels, n, per-class counts and chance levels.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.explanation import explain
from protozoo.viz import render_multiview_panel, render_panel
from protozoo.viz.lesions import because_lines, render_lesion_maps, render_lesion_panel
from protozoo.viz.overlay import blend_heatmap, to_display
from protozoo.viz.panel import heatmap_range
from protozoo.viz.report import prototypes_on_foreground

sys.path.insert(0, str(Path(__file__).parent / "explain"))
from explain_fixtures import push_by_hand, tiny_model  # noqa: E402

SIZE = 64
TINY = dict(backbone="test_resnet", feature_stage=-2, prototypes_per_class=2, prototype_dim=16)
MAMMO = ["normal", "benign", "malignant"]


def _tiny(arch: str, in_chans: int, classes: list[str], **extra):
    model = protozoo.create_model(arch, **TINY, num_classes=len(classes), in_chans=in_chans, **extra).eval()
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(in_chans, SIZE, SIZE), label_names=tuple(classes))
    return model


def _data(model, spec: str, split: str = "test", n: int = 8):
    return load_dataset(
        spec, split, image_size=SIZE, num_samples=n, transform=build_transforms(resolve_data_config(model), train=False)
    )


def _header(fig: Figure) -> str:
    """Every line written on the figure (not inside an axis), joined."""
    return " ".join(t.get_text() for t in fig.texts)


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return float(match.group(1))


def _row_points(fig: Figure) -> list[float]:
    """The "= points" written in each row's evidence column."""
    return [float(m) for ax in fig.axes for t in ax.texts for m in re.findall(r"= points\s+([+-][\d.]+)", t.get_text())]


def _footer(fig: Figure) -> str:
    return next(
        t.get_text()
        for t in fig.texts
        if t.get_text().startswith(("all ", "no lesion", "drusen"))
        or " logit " in t.get_text()
        and "= rows" in t.get_text()
    )


def _check_sum(fig: Figure, score: float) -> None:
    """Rows' points + all other prototypes (+ bias) = the score, as written; the rows as each row writes them."""
    footer = _footer(fig)
    rows = _number(r"sum: rows ([+-][\d.]+)", footer)
    others = _number(r"others ([+-][\d.]+)", footer)
    total = _number(r"= (-?[\d.]+)\s", footer)
    assert rows == pytest.approx(sum(_row_points(fig)), abs=0.01)
    assert rows + others == pytest.approx(total, abs=0.011) and total == pytest.approx(score, abs=0.006)


@pytest.fixture(scope="module")
def fmnist_like():
    torch.manual_seed(0)
    model, items = tiny_model("synthetic-mammo", in_chans=1)
    push_by_hand(model, items)
    with torch.no_grad():  # weights of both signs, so that the other prototypes pull the score down
        model.last_layer.weight.copy_(torch.randn_like(model.last_layer.weight) * 2)
    return model, items


def test_protopnet_panel_rows_and_other_prototypes_sum_to_the_score(fmnist_like, tmp_path):
    model, items = fmnist_like
    e = explain(model, items[3]["image"], top_k=2, label=int(items[3]["label"]))
    fig = render_panel(e, items, path=tmp_path / "p.png", dpi=50)
    header = _header(fig)
    assert _number(r"score \(logit\) (-?[\d.]+)", header) == pytest.approx(e.logit, abs=0.006)
    assert f"true label: {e.true_name}" in header and f"Predicted: {e.predicted_name}" in header
    _check_sum(fig, e.logit)
    others = float(e.contributions.sum()) - sum(ev.contribution for ev in e.prototypes)
    assert _number(r"all \d+ other prototypes: points ([+-][\d.]+)", _footer(fig)) == pytest.approx(others, abs=0.006)


def test_one_colour_scale_for_every_heatmap_of_a_panel(fmnist_like, tmp_path):
    model, items = fmnist_like
    e = explain(model, items[5]["image"], top_k=3)
    fig = render_panel(e, items, dpi=50)
    scale = heatmap_range(e.prototypes)
    assert scale == (
        min(0.0, min(float(ev.heatmap.min()) for ev in e.prototypes)),
        max(float(ev.heatmap.max()) for ev in e.prototypes),
    )
    display = to_display(e.image, e.mean, e.std)
    for r, ev in enumerate(e.prototypes):
        drawn = fig.axes[5 * r + 1].get_images()[0].get_array()
        np.testing.assert_allclose(drawn, blend_heatmap(display, ev.heatmap.numpy(), value_range=scale), atol=1e-6)
    colorbar = fig.axes[-1]
    assert colorbar.get_xlim() == pytest.approx(scale)
    weakest = min(range(len(e.prototypes)), key=lambda r: float(e.prototypes[r].heatmap.max()))
    if float(e.prototypes[weakest].heatmap.max()) < 0.9 * scale[1]:  # a weak match is drawn weaker than the strongest
        tinted = np.abs(fig.axes[5 * weakest + 1].get_images()[0].get_array() - display).max()
        assert tinted < 0.6 * 0.95


@pytest.fixture(scope="module")
def braix():
    torch.manual_seed(0)
    model = _tiny("braix_protopnet_pp_resnet18", 1, MAMMO)
    data = _data(model, "synthetic-mammo")
    with torch.no_grad():  # the global branch says malignant, the prototype branch favours normal: they disagree
        head = model.global_head
        last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor([0.0, 0.0, 8.0]))
        model.last_layer.weight.zero_()
        model.last_layer.weight[0, model.prototype_class == 0] = 1.0
    return model, data


def test_braix_panel_states_each_branch_decision_as_the_branch_decides(braix, tmp_path):
    model, data = braix
    item = data[1]
    e = explain(model, item["image"], top_k=2, label=int(item["label"]))
    with torch.no_grad():
        out = model(item["image"][None])
    decided = {
        "ensemble": MAMMO[int(out.probabilities[0].argmax())],
        "global": MAMMO[int(out.global_logits[0].argmax())],
        "prototype": MAMMO[int(out.prototype_logits[0].argmax())],
    }
    assert decided["global"] == "malignant" and decided["prototype"] == "normal"  # the case of issue #18
    fig = render_panel(e, path=tmp_path / "braix.png", dpi=50)
    header = _header(fig)
    assert re.search(r"Ensemble decision: (\w+)", header).group(1) == decided["ensemble"]
    assert re.search(r"global branch \(CNN\): .*?-> decides (\w+)", header).group(1) == decided["global"]
    assert re.search(r"prototype branch: .*?-> decides (\w+)", header).group(1) == decided["prototype"]
    for branch, probabilities in (
        ("global branch \\(CNN\\)", out.global_logits[0].softmax(0)),
        ("prototype branch", out.prototype_logits[0].softmax(0)),
    ):
        written = re.search(branch + r": normal ([\d.]+), benign ([\d.]+), malignant ([\d.]+)", header).groups()
        assert [float(p) for p in written] == pytest.approx(probabilities.tolist(), abs=0.006)
    # The rows are labelled as the prototype branch's evidence for the explained class, and say that branch disagrees.
    explained = re.search(r"Rows: the prototype branch's evidence for (\w+)", header).group(1)
    assert explained == e.class_name == decided["ensemble"]
    assert f"though the prototype branch itself decides {decided['prototype']}" in header
    assert all("prototype branch's" in t.get_text() for ax in fig.axes[4::5] for t in ax.texts)
    _check_sum(fig, float(out.prototype_logits[0, e.class_idx]))


@pytest.fixture(scope="module")
def lesion():
    torch.manual_seed(0)
    model = _tiny("protopnet_lesion_resnet18", 3, ["non-AMD", "AMD"])
    return model, _data(model, "synthetic-fundus")


def _because(lines: list[str], name: str) -> dict[str, float]:
    """``{lesion: points}`` of the "<name> because: ..." line (or the "too weak" line's terms)."""
    line = next((line for line in lines if line.startswith(f"{name} because")), "")  # "AMD although no lesion is found"
    return {
        m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"([a-z ]+?) [\d.]+ × p [\d.]+ = ([+-][\d.]+)", line)
    }


def test_lesion_pictures_read_the_disease_because_of_its_lesions_and_never_count_a_lesion_for_non_amd(lesion, tmp_path):
    model, data = lesion
    image = data[0]["image"]
    drusen = model.lesion_names.index("drusen")
    healthy = model.head.healthy_class
    assert healthy == 0 and bool((model.head.diagnosis.weight[healthy] == 0).all())
    previous = None
    for rise in (0.0, 4.0, 8.0):  # drusen's evidence rises (its lesion logit), nothing else changes
        with torch.no_grad():
            model.head.lesion_bias[drusen] += rise - (0.0 if previous is None else previous[0])
        e = explain(model, image, top_k=2)
        amd_logit = float(e.class_logits[1])
        lines = because_lines(e)
        fig = render_lesion_maps(e, path=tmp_path / f"maps_{rise}.png", dpi=40)
        written = _header(fig)
        assert "non-AMD takes no lesion evidence" in written
        assert not re.search(r"non-AMD because: \w", written)  # no lesion is ever named as evidence for non-AMD
        score = _number(r"AMD score \(logit\) (-?[\d.]+)", " ".join(lines))
        assert score == pytest.approx(amd_logit, abs=0.006)
        terms = _because(lines, "AMD") if e.predicted == 1 else _because(lines, "non-AMD")
        # the composition written adds up: bias + lesions found + lesions not found = the AMD score
        parts = re.search(
            r"AMD score \(logit\) (-?[\d.]+) = bias ([+-][\d.]+) \+ lesions found ([+-][\d.]+) "
            r"\+ lesions not found ([+-][\d.]+)",
            " ".join(lines),
        ).groups()
        assert float(parts[1]) + float(parts[2]) + float(parts[3]) == pytest.approx(float(parts[0]), abs=0.02)
        assert sum(terms.values()) == pytest.approx(float(parts[2]), abs=0.02)
        if previous is not None:
            assert amd_logit >= previous[1] - 1e-6  # the diagnosis does not fall when a lesion's evidence rises
            assert terms.get("drusen", 0.0) >= previous[2].get("drusen", 0.0) - 1e-6
        previous = (rise, amd_logit, terms)
    assert e.lesions[drusen].found and e.predicted == 1
    assert "drusen" in previous[2] and previous[2]["drusen"] > 0  # "AMD because: drusen ..."
    assert re.search(r"AMD because: drusen [\d.]+ × p [\d.]+ = \+", " ".join(lines))
    fig = render_lesion_panel(e, dpi=40)
    assert "AMD because: drusen" in _header(fig)
    for ev, ax in zip(e.prototypes, fig.axes[4::5]):  # a lesion prototype's points go to its lesion's logit
        assert f"to the {ev.class_name} logit" in ax.texts[0].get_text().replace("\n", " ")
    footer = _footer(fig)
    logit = _number(r"drusen logit (-?[\d.]+)", footer)
    rows, others, bias = (
        _number(p, footer) for p in (r"rows ([+-][\d.]+)", r"other prototypes ([+-][\d.]+)", r"bias ([+-][\d.]+)")
    )
    assert rows + others + bias == pytest.approx(logit, abs=0.02) and logit == pytest.approx(
        e.lesions[drusen].logit, abs=0.006
    )


def test_a_non_amd_diagnosis_says_the_amd_evidence_was_too_weak(lesion):
    model, data = lesion
    with torch.no_grad():
        model.head.lesion_bias.fill_(-8.0)  # no lesion anywhere
        model.head.diagnosis.bias.copy_(torch.tensor([2.0, -2.0]))
    e = explain(model, data[0]["image"])
    assert e.predicted_name == "non-AMD"
    lines = because_lines(e)
    assert any(line.startswith("non-AMD because the lesion evidence for AMD is too weak") for line in lines)
    assert any("< non-AMD score 2.00" in line for line in lines)


def test_multiview_panel_has_a_source_column_and_sums_to_the_breast_score(tmp_path):
    torch.manual_seed(0)
    model = _tiny("protopnet_multiview_resnet18", 1, MAMMO, attention_dim=8, projection_dim=16)
    train = _data(model, "synthetic-mammo", "train", 12)
    protozoo.push_prototypes(model, torch.utils.data.DataLoader(train, batch_size=6, collate_fn=_collate()))
    item = _data(model, "synthetic-mammo")[0]
    e = explain(model, (item["views"]["cc"]["image"], item["views"]["mlo"]["image"]), top_k=2, label=int(item["label"]))
    fig = render_multiview_panel(e, train, path=tmp_path / "mv.png", dpi=40)
    assert any(t.get_text() == "prototype's\ntraining patch" for t in fig.texts)
    for r, ev in enumerate(e.prototypes):
        source = fig.axes[6 * r + 4]
        assert source.get_images() and ev.source["image_id"].endswith(source.get_title().lstrip("…"))
        assert source.patches  # the source's top-5% box
    footer = _footer(fig)
    rows, others, co = (
        _number(p, footer) for p in (r"sum: rows ([+-][\d.]+)", r"others ([+-][\d.]+)", r"co-occurrence ([+-][\d.]+)\n")
    )
    assert rows == pytest.approx(sum(_row_points(fig)), abs=0.01)
    assert rows + others + co == pytest.approx(e.logit, abs=0.02)
    assert f"true label: {e.true_name}" in _header(fig)


def _collate():
    from protozoo.data.collate import collate_items

    return collate_items


def test_demo_report_lists_true_labels_n_counts_chance_and_the_banner(tmp_path):
    from protozoo.cli.demo import write_report

    torch.manual_seed(0)
    model = _tiny("braix_protopnet_pp_resnet18", 1, MAMMO)
    model.pretrained_cfg = model.pretrained_cfg.replace(
        extra={"train_data": {"spec": "synthetic-mammo", "options": {}}}
    )
    train = _data(model, "synthetic-mammo", "train", 12)
    test = _data(model, "synthetic-mammo", "test", 9)
    protozoo.push_prototypes(model, torch.utils.data.DataLoader(train, batch_size=6, collate_fn=_collate()))
    report = write_report(tmp_path, model, test, {"test accuracy": 0.5}, train, per_class=1)
    text = report.read_text()
    labels = [int(test[i]["label"]) for i in range(len(test))]
    assert "test images (n)</th><td>9<" in text
    counts = ", ".join(f"{name} {labels.count(k)}" for k, name in enumerate(MAMMO))
    assert counts in text
    majority = max(range(3), key=labels.count)
    assert f"{labels.count(majority) / 9:.3f} ({MAMMO[majority]})" in text and "chance AUROC" in text
    assert "INTENDED USE: Trained on synthetic data (synthetic-mammo) only; not for clinical use." in text
    rows = re.findall(r"<tr><td>(synthetic-mammo/test/\d+)</td><td>(\w+)</td><td[^>]*>(\w+)</td>", text)
    present = {MAMMO[label] for label in labels}
    assert len(rows) == len(
        present
    )  # one explained item per class present, each with its true label beside the prediction
    by_id = {test[i]["id"]: MAMMO[labels[i]] for i in range(len(test))}
    assert all(by_id[item] == truth for item, truth, _ in rows) and {truth for _, truth, _ in rows} == present
    assert text.count("true label: ") >= len(rows) and "out of distribution?" in text
    assert model.pretrained_cfg.extra["ood"]["images"] == len(train)  # the OOD statistics the notes read
    on, seen = prototypes_on_foreground(model, train)
    assert seen == model.num_prototypes and f"{on} of {seen}" in text  # whether the prototypes sit on the breast


def test_every_picture_of_a_synthetic_trained_model_carries_the_intended_use(fmnist_like, tmp_path):
    from protozoo.viz import render_gallery

    model, items = fmnist_like
    plain = render_panel(explain(model, items[0]["image"], top_k=1), items, dpi=40)
    assert not any("INTENDED USE" in t.get_text() for t in plain.texts)  # nothing known: no banner is made up
    recorded = model.pretrained_cfg
    model.pretrained_cfg = recorded.replace(extra={"train_data": {"spec": "synthetic-mammo", "options": {}}})
    try:
        banner = "INTENDED USE: Trained on synthetic data (synthetic-mammo) only; not for clinical use."
        for fig in (
            render_panel(explain(model, items[0]["image"], top_k=1), items, dpi=40),
            render_gallery(model, items, dpi=40),
        ):
            assert banner in " ".join(t.get_text() for t in fig.texts)
        model.pretrained_cfg = recorded.replace(extra={"intended_use": "Research only."})
        assert "INTENDED USE: Research only." in _header(
            render_panel(explain(model, items[0]["image"], top_k=1), dpi=40)
        )
    finally:
        model.pretrained_cfg = recorded
