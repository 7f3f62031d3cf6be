"""Shortcut learning shows in the benchmark: with the class-coding tag on every training image (p=1)
the figures that measure it are higher than without (p=0), on the same tiny run otherwise."""

from __future__ import annotations

import pytest
import torch

from protozoo.benchmark import run
from protozoo.benchmark.shortcut import TaggedTest, prototypes_on_tag
from protozoo.data import load_dataset
from protozoo.data.synthetic._common import marker_box

pytest.importorskip("pytorch_grad_cam")

SHORTCUT_RUN = dict(
    backbones=("efficientnet_lite0",),
    inits=("imagenet",),
    methods=("gradcam", "prototypes"),
    epochs=3,
    last_layer_epochs=0,
    image_size=64,
    train_samples=64,
    test_samples=16,
    faithfulness_samples=0,
    batch_size=16,
    shortcut_figures=True,
)


def test_tagged_test_items_carry_their_labels_tag_as_mask():
    raw = load_dataset("synthetic-fundus", "test", image_size=64, num_samples=4)
    tagged = TaggedTest(raw, None)
    for i in range(4):
        item, plain = tagged[i], raw[i]
        x0, y0, x1, y1 = marker_box(int(plain["label"]), 2, 64)
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.equal(item["mask"][0] > 0.5, inside)
        assert torch.equal(item["image"][:, ~inside], plain["image"][:, ~inside])  # only the tag is drawn
        assert item["image"][:, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].min() == 1.0


def test_prototypes_on_tag_counts_source_boxes_holding_the_tag():
    data = load_dataset("synthetic-fundus", "train", image_size=64, num_samples=3, shortcut=1.0)
    tag = data[0]["shortcut_box"].tolist()
    on = {"image_id": data.sample_id(0), "high_activation_box": [tag[0] - 2, tag[1] - 1, tag[2] + 5, tag[3] + 5]}
    off = {"image_id": data.sample_id(1), "high_activation_box": [40, 40, 64, 64]}
    assert prototypes_on_tag([on, off], data) == 0.5
    untagged = load_dataset("synthetic-fundus", "train", image_size=64, num_samples=3, shortcut=0.0)
    assert prototypes_on_tag([on, off], untagged) == 0.0


def test_shortcut_figures_rise_with_p(tmp_path):
    figures = {}
    for p in (0.0, 1.0):
        rows = run(tmp_path / f"p{p}", progress=False, report=False, log=lambda _: None, shortcut=p, **SHORTCUT_RUN)
        figures[p] = {row["method"]: row for row in rows}
    classifier = {p: figures[p]["gradcam"] for p in figures}
    protopnet = {p: figures[p]["prototypes"] for p in figures}
    # The classifier leans on the tag: it loses more accuracy when the tag is gone.
    assert classifier[1.0]["accuracy_drop"] > classifier[0.0]["accuracy_drop"] + 0.05
    # Prototypes are pushed onto tags only where the training images carry them.
    assert protopnet[0.0]["prototypes_on_tag"] == 0.0 < protopnet[1.0]["prototypes_on_tag"]
    for row in (*classifier.values(), *protopnet.values()):
        assert row["tag_lift"] is not None and row["tag_energy"] is not None
