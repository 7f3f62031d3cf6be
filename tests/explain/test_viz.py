"""protozoo.viz: what the pictures show (pixels, tiles, boxes), not only that files exist."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
import torch
from explain_fixtures import push_by_hand, tiny_model  # tests/explain is on sys.path (prepend mode)
from matplotlib.patches import Rectangle
from PIL import Image

from protozoo.explanation import explain
from protozoo.viz import (
    blend_heatmap,
    crop,
    panel_size,
    render_gallery,
    render_panel,
    render_report,
    to_display,
    window,
)
from protozoo.viz.panel import header_lines


@pytest.fixture(scope="module")
def gray():
    torch.manual_seed(0)
    model, items = tiny_model("synthetic-mammo", in_chans=1)
    push_by_hand(model, items)
    return model, items


@pytest.fixture(scope="module")
def rgb():
    torch.manual_seed(0)
    return tiny_model("synthetic-fundus", in_chans=3)


def _tile(png: np.ndarray, ax, inset: int = 4) -> np.ndarray:
    """The pixels inside an axis of a saved figure (PNG rows from the top)."""
    h, w = png.shape[:2]
    pos = ax.get_position()
    top, bottom = round((1 - pos.y1) * h) + inset, round((1 - pos.y0) * h) - inset
    left, right = round(pos.x0 * w) + inset, round(pos.x1 * w) - inset
    return png[top:bottom, left:right, :3].astype(int)


def test_grayscale_is_windowed_gray_and_rgb_is_denormalised():
    gray = torch.linspace(-2, 3, 64 * 64).view(1, 64, 64)
    shown = to_display(gray, (0.5,), (0.25,))
    assert shown.shape == (64, 64, 3)
    assert (shown[..., 0] == shown[..., 1]).all() and (shown[..., 1] == shown[..., 2]).all()
    assert shown.min() == 0 and shown.max() == 1  # the 1-99 percentile window stretches to full range
    np.testing.assert_allclose(window(np.arange(101.0)), np.clip((np.arange(101.0) - 1) / 98, 0, 1))
    image = torch.rand(3, 8, 8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    np.testing.assert_allclose(to_display(normalised, mean, std), image.permute(1, 2, 0).numpy(), atol=1e-5)


def test_blending_keeps_the_anatomy_visible():
    rng = np.random.default_rng(0)
    anatomy = np.repeat(rng.random((64, 64))[..., None], 3, axis=2)
    yy, xx = np.mgrid[:64, :64]
    heat = np.exp(-((xx - 40) ** 2 + (yy - 20) ** 2) / 50.0)
    blended = blend_heatmap(anatomy, heat)
    plain_heat = blend_heatmap(np.zeros_like(anatomy), heat, alpha=1.0)
    assert not np.allclose(blended, anatomy) and not np.allclose(blended, plain_heat)
    assert np.corrcoef(blended.mean(2).ravel(), anatomy.mean(2).ravel())[0, 1] > 0.8
    cold = heat < 1e-3
    np.testing.assert_allclose(blended[cold], anatomy[cold], atol=1e-3)  # untouched where nothing matches
    assert np.abs(blended[20, 40] - anatomy[20, 40]).max() > 0.1  # tinted at the peak


def test_crop_is_a_square_around_the_box():
    array = np.zeros((100, 120))
    part, (left, top) = crop(array, (50, 40, 60, 60), margin=0.5)
    assert part.shape == (40, 40) and left <= 50 and left + 40 >= 60 and top <= 40 and top + 40 >= 60
    part, (left, top) = crop(array, (0, 0, 10, 10), margin=1.0)
    assert (left, top) == (0, 0) and part.shape == (30, 30)


def test_panel_tiles_size_and_what_they_show(gray, tmp_path):
    model, items = gray
    e = explain(model, items[5]["image"], top_k=3)
    path = tmp_path / "panel.png"
    fig = render_panel(e, {it["id"]: it for it in items}, path=path, dpi=80)
    assert len(fig.axes) == 3 * 5 + 1  # the rows and the colour bar
    width, height = panel_size(3, len(header_lines(e)))
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.shape[:2] == (round(height * 80), round(width * 80))
    title = next(t.get_text() for t in fig.texts if t.get_text().startswith("Predicted: "))
    assert f"{e.probability:.2f}" in title
    for r, ev in enumerate(e.prototypes):
        plain, heat, boxed, source, text = fig.axes[5 * r : 5 * r + 5]
        tile = _tile(png, plain)
        assert (tile[..., 0] == tile[..., 1]).all() and (tile[..., 1] == tile[..., 2]).all()  # gray stays gray
        assert tile.std() > 5  # and shows the anatomy
        assert np.abs(np.diff(_tile(png, heat), axis=2)).max() > 30  # the heatmap is in colour
        (rect,) = [p for p in boxed.patches if isinstance(p, Rectangle)]
        x0, y0, x1, y1 = ev.box
        assert rect.get_xy() == (x0 - 0.5, y0 - 0.5) and (rect.get_width(), rect.get_height()) == (x1 - x0, y1 - y0)
        assert ev.source["image_id"] in source.get_title()
        assert source.patches  # the source's box is drawn
        words = text.texts[0].get_text()
        assert (
            f"{ev.similarity:7.3f}" in words and f"{ev.contribution:+7.3f}" in words and f"{ev.weight:+7.3f}" in words
        )


def test_panel_without_push_says_so(rgb, tmp_path):
    model, items = rgb
    fig = render_panel(explain(model, items[0]["image"], top_k=2), path=tmp_path / "p.png")
    assert len(fig.axes) == 10 + 1  # and the colour bar
    assert "not pushed" in fig.axes[3].texts[0].get_text()
    tile = _tile(np.asarray(Image.open(tmp_path / "p.png").convert("RGB")), fig.axes[0])
    assert np.abs(np.diff(tile, axis=2)).max() > 30  # a colour fundus stays in colour


def test_gallery_has_one_tile_per_prototype(gray, tmp_path):
    model, items = gray
    fig = render_gallery(model, items, path=tmp_path / "g.png", zoom=True)
    assert len(fig.axes) == model.num_prototypes
    names = model.pretrained_cfg.label_names
    columns = model.num_prototypes // len(names)
    for p, ax in enumerate(fig.axes):
        row = model.provenance[p]
        title = ax.get_title()
        assert title.startswith(f"p{p}\n") and row["image_id"] in title
        assert fig.axes[p - p % columns].get_ylabel() == names[row["class"]]  # in its class's row
        assert ax.images and ax.patches  # the blended source and its box
    assert [ax.get_ylabel() for ax in fig.axes[::columns]] == list(names)  # one row per class
    assert Image.open(tmp_path / "g.png").size == tuple(round(v * 100) for v in fig.get_size_inches())


def test_gallery_without_source_images_draws_the_map_and_says_so(gray):
    model, _ = gray
    fig = render_gallery(model, None)
    assert all("not found" in ax.get_title() for ax in fig.axes)
    assert all(ax.images[0].get_array().shape == tuple(model.provenance[0]["feature_size"]) for ax in fig.axes)


def test_gallery_needs_a_push(rgb):
    model, _ = rgb
    with pytest.raises(ValueError, match="push"):
        render_gallery(model)


def test_report_is_self_contained(gray, tmp_path):
    model, items = gray
    gallery = tmp_path / "g.png"
    render_gallery(model, items, path=gallery)
    explanations = [explain(model, items[i]["image"], top_k=2) for i in range(2)]
    path = render_report(
        tmp_path / "report.html",
        model=model,
        metrics={"accuracy": 0.8125, "epochs": 3},
        gallery_png=gallery,
        explanations=explanations,
        sources=items,
    )
    text = path.read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) == 3 and all(base64.b64decode(u)[:8] == b"\x89PNG\r\n\x1a\n" for u in uris)
    markup = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(https?:)?//[a-z]", markup, re.IGNORECASE) and "url(" not in markup
    assert "<script" not in markup and "<link" not in markup
    assert "0.8125" in text and "accuracy" in text and "malignant" in text
    assert explanations[0].predicted_name in text


def test_panel_header_breaks_only_at_spaces_so_class_names_stay_whole(gray):
    model, items = gray
    e = explain(model, items[5]["image"], top_k=3)
    title = "Predicted: yellow_belly+white-ring_eye (probability 1.00) · true label: yellow_belly+white-ring_eye"
    for width in range(40, 100):  # the title gets 5/6 of the width; the longest word (27) fits from 33
        lines = [line.text for line in header_lines(e, title, wrap=width) if line.kind == "title"]
        assert " ".join(lines) == title  # nothing dropped, every break at a space
        assert all("white-ring_eye" in line for line in lines if "white-" in line), width
