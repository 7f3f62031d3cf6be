"""Explanations of the medical heads (BRAIx, multi-view CC/MLO, lesion), their pictures and examples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle
from PIL import Image

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.explanation import ViewEvidence, explain
from protozoo.viz import render_lesion_maps, render_multiview_panel
from protozoo.viz.lesions import evidence_class

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
TINY = dict(backbone="test_resnet", feature_stage=-2, prototypes_per_class=2, prototype_dim=16)


def _tiny(arch: str, in_chans: int, classes: list[str], **extra):
    model = protozoo.create_model(arch, **TINY, num_classes=len(classes), in_chans=in_chans, **extra).eval()
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(in_chans, SIZE, SIZE), label_names=tuple(classes))
    return model


@pytest.fixture(scope="module")
def mammo():
    torch.manual_seed(0)
    model = _tiny(
        "protopnet_multiview_resnet18", 1, ["normal", "benign", "malignant"], attention_dim=8, projection_dim=16
    )
    data = load_dataset(
        "synthetic-mammo",
        "test",
        image_size=SIZE,
        num_samples=4,
        transform=build_transforms(resolve_data_config(model), train=False),
    )
    return model, data[0]


@pytest.fixture(scope="module")
def fundus():
    torch.manual_seed(0)
    model = _tiny("protopnet_lesion_resnet18", 3, ["non-AMD", "AMD"])
    data = load_dataset(
        "synthetic-fundus",
        "test",
        image_size=SIZE,
        num_samples=4,
        transform=build_transforms(resolve_data_config(model), train=False),
    )
    return model, data[0]


def test_braix_branches_and_prototype_branch_decomposition(mammo):
    model = _tiny("braix_protopnet_pp_resnet18", 1, ["normal", "benign", "malignant"])
    image = mammo[1]["image"]
    e = explain(model, image, top_k=3, class_idx=2)
    with torch.no_grad():
        out = model(image[None])
    assert e.family == "braix_protopnet_pp" and set(e.branch_probabilities) == {"global", "prototype", "ensemble"}
    torch.testing.assert_close(e.branch_probabilities["ensemble"], out.probabilities[0])
    torch.testing.assert_close(e.branch_probabilities["global"], out.global_logits[0].softmax(0))
    assert e.predicted == int(out.probabilities[0].argmax())
    assert e.logit == pytest.approx(float(out.prototype_logits[0, 2]), abs=1e-5)
    assert float(e.contributions.sum()) == pytest.approx(
        e.logit, abs=1e-5
    )  # sum over prototypes = prototype-branch logit
    assert [ev.contribution for ev in e.prototypes] == sorted((ev.contribution for ev in e.prototypes), reverse=True)


@pytest.mark.parametrize("views", ["both", "tuple-cc-only", "dict-mlo-only"])
def test_multiview_evidence_per_view_and_both_blocks_sum_to_the_logit(mammo, views):
    model, item = mammo
    cc, mlo = item["views"]["cc"]["image"], item["views"]["mlo"]["image"]
    given = {"both": (cc, mlo), "tuple-cc-only": (cc, None), "dict-mlo-only": (None, mlo)}[views]
    inputs = dict(zip(("cc", "mlo"), given)) if views.startswith("dict") else given
    present = [v for v, x in zip(("cc", "mlo"), given) if x is not None]
    e = explain(model, inputs, top_k=3)
    with torch.no_grad():
        out = model(*(None if x is None else x[None] for x in given))
    assert e.family == "protopnet_multiview" and list(e.view_images) == present
    total = float(e.contributions.sum() + e.cooccurrence_contributions.sum())
    assert total == pytest.approx(e.logit, abs=1e-5) and e.logit == pytest.approx(
        float(out.logits[0, e.class_idx]), abs=1e-5
    )
    assert bool(e.cooccurrence) == (len(present) == 2)
    for ev in e.prototypes:
        assert isinstance(ev, ViewEvidence) and ev.view in present and set(ev.view_heatmaps) == set(present)
        assert ev.similarity == pytest.approx(max(ev.view_similarities.values()), abs=1e-6)
        assert ev.view_similarities[ev.view] == pytest.approx(ev.similarity, abs=1e-6)
        for v in present:
            heat = ev.view_heatmaps[v]
            assert heat.shape == (SIZE, SIZE)
            y, x = divmod(int(heat.argmax()), SIZE)
            x0, y0, x1, y1 = ev.view_boxes[v]
            assert x0 <= x < x1 and y0 <= y < y1
    for co in e.cooccurrence:
        assert co.contribution == pytest.approx(co.score * co.weight, abs=1e-6)


def test_lesion_diagnosis_decomposes_over_lesions(fundus):
    model, item = fundus
    e = explain(model, item["image"], top_k=2, class_idx=1)
    with torch.no_grad():
        out = model(item["image"][None])
        maps = model.lesion_maps(item["image"][None])[0]
    assert e.family == "protopnet_lesion" and [lesion.name for lesion in e.lesions] == model.lesion_names
    assert float(e.contributions.sum()) + e.bias == pytest.approx(e.logit, abs=1e-5)
    assert e.logit == pytest.approx(float(out.logits[0, 1]), abs=1e-5)
    weight = model.head.diagnosis.weight[1].detach()
    for lesion in e.lesions:
        probability = float(out.lesion_logits[0, lesion.index].sigmoid())
        assert lesion.probability == pytest.approx(probability, abs=1e-6) and lesion.found == (probability >= 0.5)
        assert lesion.contribution == pytest.approx(float(weight[lesion.index]) * probability, abs=1e-6)
        assert lesion.lesion_map.shape == (SIZE, SIZE)
        assert all(model.prototype_class[ev.index] == lesion.index for ev in lesion.prototypes)
    torch.testing.assert_close(e.lesion_maps, maps)


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _tile(png: np.ndarray, ax, inset: int = 4) -> np.ndarray:
    h, w = png.shape[:2]
    pos = ax.get_position()
    return png[
        round((1 - pos.y1) * h) + inset : round((1 - pos.y0) * h) - inset,
        round(pos.x0 * w) + inset : round(pos.x1 * w) - inset,
    ]


def test_multiview_panel_draws_both_views_gray_with_boxes_at_the_peaks(mammo, tmp_path):
    model, item = mammo
    e = explain(model, (item["views"]["cc"]["image"], item["views"]["mlo"]["image"]), top_k=2)
    path = tmp_path / "mv.png"
    fig = render_multiview_panel(e, path=path, dpi=60)
    assert len(fig.axes) == 6 * len(e.prototypes) + 1  # CC, CC match, MLO, MLO match, source, text; the colour bar
    png = _png(path)
    assert png.shape[:2] == (round(fig.get_figheight() * 60), round(fig.get_figwidth() * 60))
    for r, ev in enumerate(e.prototypes):
        cc, cc_heat, mlo, mlo_heat, _, _ = fig.axes[6 * r : 6 * r + 6]
        for plain in (cc, mlo):  # windowed grayscale: R = G = B
            tile = _tile(png, plain)
            assert (tile[..., 0] == tile[..., 1]).all() and (tile[..., 1] == tile[..., 2]).all()
        for v, ax in (("cc", cc_heat), ("mlo", mlo_heat)):
            (box,) = [p for p in ax.patches if isinstance(p, Rectangle)]
            x0, y0, x1, y1 = ev.view_boxes[v]
            assert (box.get_x() + 0.5, box.get_y() + 0.5, box.get_width(), box.get_height()) == (
                x0,
                y0,
                x1 - x0,
                y1 - y0,
            )
    assert any(e.predicted_name in t.get_text() and "Breast-level prediction" in t.get_text() for t in fig.texts)


def test_lesion_picture_has_the_image_one_map_per_lesion_and_the_bars(fundus, tmp_path):
    model, item = fundus
    e = explain(model, item["image"], top_k=2)
    path = tmp_path / "lesions.png"
    fig = render_lesion_maps(e, path=path, dpi=60)
    lesions = model.num_lesions
    assert len(fig.axes) == 1 + lesions + 2  # image, maps, colour bar, bars
    for lesion, ax in zip(e.lesions, fig.axes[1 : 1 + lesions]):
        assert f"{lesion.probability:.2f}" in ax.get_title()
        assert ax.get_images()[0].get_array().shape == (SIZE, SIZE, 3)
    bars = fig.axes[-1]
    heights = sorted(p.get_width() for p in bars.patches)
    k = evidence_class(e)  # the explained class, or the disease class where the explained one takes no lesion evidence
    points = [float(e.diagnosis_weight[k, lesion.index]) * lesion.probability for lesion in e.lesions]
    assert heights == pytest.approx(sorted(points + [float(e.diagnosis_bias[k])]), abs=1e-6)
    assert sum(points) + float(e.diagnosis_bias[k]) == pytest.approx(float(e.class_logits[k]), abs=1e-4)
    assert _png(path).shape[:2] == (round(fig.get_figheight() * 60), round(fig.get_figwidth() * 60))


def _run_example(name: str, out: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_multiview_example_smoke(tmp_path):
    out = _run_example("multiview_mammogram.py", tmp_path)
    assert "UNTRAINED" in out and "breast-level prediction" in out
    assert Image.open(tmp_path / "multiview.png").size[0] > 500


def test_amd_example_smoke(tmp_path):
    out = _run_example("amd_lesions.py", tmp_path)
    assert "UNTRAINED" in out and "bias" in out
    assert Image.open(tmp_path / "lesions.png").size[0] > 800
