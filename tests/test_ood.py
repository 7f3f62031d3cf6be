"""protozoo.ood: the out-of-distribution rule, on synthetic images against a constant and a noise image."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.explanation import explain, explain_batch
from protozoo.ood import OOD_KEY, OOD_QUANTILE, calibrate

sys.path.insert(0, str(Path(__file__).parent / "explain"))
from explain_fixtures import tiny_model  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def calibrated():
    torch.manual_seed(0)
    model, _ = tiny_model("synthetic-mammo", in_chans=1, size=SIZE)
    transform = build_transforms(resolve_data_config(model), train=False)
    train = load_dataset("synthetic-mammo", "train", image_size=SIZE, num_samples=96, transform=transform)
    test = load_dataset("synthetic-mammo", "test", image_size=SIZE, num_samples=32, transform=transform)
    stats = calibrate(model, train, description="synthetic-mammo train")
    return model, transform, train, test, stats


def test_without_statistics_the_note_says_nothing_can_be_said():
    model, items = tiny_model("synthetic-mammo", in_chans=1, size=SIZE)
    note = explain(model, items[0]["image"]).ood
    assert note.flagged is None and note.statistic is None and note.threshold is None
    assert "no training-data statistics" in note.text


def test_recorded_statistics_are_the_training_images_distances(calibrated):
    model, _, train, _, stats = calibrated
    assert stats is model.pretrained_cfg.extra[OOD_KEY]
    assert stats["images"] == len(train) and stats["data"] == "synthetic-mammo train"
    q = stats["quantiles"]
    assert q["0.5"] <= q["0.9"] <= q["0.95"] <= q[str(OOD_QUANTILE)] <= q["1.0"]
    # The statistic by hand: Mahalanobis distance of the mean-pooled latent map to the recorded mean.
    with torch.no_grad():
        z = (
            model.latent(torch.stack([train[i]["image"] for i in range(len(train))])).double().mean(dim=(2, 3))
        )  # (N, D)
    mean = torch.tensor(stats["mean"], dtype=torch.float64)
    torch.testing.assert_close(mean, z.mean(0))
    d = z - mean
    s = torch.einsum("nd,de,ne->n", d, torch.tensor(stats["precision"], dtype=torch.float64), d).sqrt()
    assert q[str(OOD_QUANTILE)] == pytest.approx(float(torch.quantile(s, OOD_QUANTILE)), rel=1e-6)
    assert (s > q[str(OOD_QUANTILE)]).float().mean() <= 0.02  # by construction about 1 in 100 training images


def test_synthetic_test_images_pass_and_constant_or_noise_images_are_flagged(calibrated):
    model, transform, _, test, stats = calibrated
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    notes = [e.ood for e in explain_batch(model, images)]
    assert sum(n.flagged for n in notes) <= 2  # held-out images of the training distribution: (almost) none flagged
    assert all(n.threshold == stats["quantiles"][str(OOD_QUANTILE)] for n in notes)
    generator = torch.Generator().manual_seed(0)
    odd = {
        "constant": torch.full((1, SIZE, SIZE), 0.5),
        "noise texture": torch.rand(1, SIZE, SIZE, generator=generator),
        "photograph-like blocks": torch.rand(1, 8, 8, generator=generator)
        .repeat_interleave(8, 1)
        .repeat_interleave(8, 2),
    }
    for name, raw in odd.items():
        note = explain(model, transform({"image": raw})["image"]).ood
        assert note.flagged, f"{name}: {note.text}"
        assert note.statistic > note.threshold and "OUT OF DISTRIBUTION" in note.text


def test_statistics_travel_with_the_saved_model(calibrated, tmp_path):
    model, transform, _, test, _ = calibrated
    model.save_pretrained(tmp_path / "m")
    reloaded = protozoo.load(str(tmp_path / "m"))
    image = test[0]["image"]
    assert explain(reloaded, image).ood == explain(model, image).ood


def test_calibration_needs_a_spread(calibrated):
    model, _, train, _, _ = calibrated
    with pytest.raises(ValueError, match="at least 2"):
        calibrate(model, train, max_items=1)


def test_statistics_of_another_latent_size_are_refused(calibrated):
    model, _, _, test, stats = calibrated
    broken = {**stats, "mean": stats["mean"][:-1]}
    model.pretrained_cfg = model.pretrained_cfg.replace(extra={**model.pretrained_cfg.extra, OOD_KEY: broken})
    try:
        with pytest.raises(ValueError, match="re-record them with protozoo.ood.calibrate"):
            explain(model, test[0]["image"])
    finally:
        model.pretrained_cfg = model.pretrained_cfg.replace(extra={**model.pretrained_cfg.extra, OOD_KEY: stats})


def test_protozoo_explain_measures_a_synthetic_model_on_its_recorded_training_data_and_flags_a_constant_image(
    tmp_path, capsys
):
    import argparse

    import numpy as np
    from PIL import Image

    from protozoo.cli import explain as explain_cmd

    torch.manual_seed(0)
    model, items = tiny_model("synthetic-mammo", in_chans=1, size=SIZE)
    options = {"image_size": SIZE, "num_samples": 48}
    model.pretrained_cfg = model.pretrained_cfg.replace(
        extra={"train_data": {"spec": "synthetic-mammo", "options": options}}
    )
    model.save_pretrained(tmp_path / "model")
    raw = load_dataset("synthetic-mammo", "test", image_size=SIZE, num_samples=2)[0]["image"][0].numpy()
    Image.fromarray((raw * 255).astype(np.uint8)).save(tmp_path / "breast.png")
    Image.fromarray(np.full((SIZE, SIZE), 128, dtype=np.uint8)).save(tmp_path / "constant.png")
    parser = argparse.ArgumentParser()
    explain_cmd.add_parser(parser.add_subparsers(dest="command"), "explain")
    args = parser.parse_args(
        [
            "explain",
            "--model",
            str(tmp_path / "model"),
            str(tmp_path / "breast.png"),
            str(tmp_path / "constant.png"),
            "--out",
            str(tmp_path / "out"),
            "--top-k",
            "2",
        ]
    )
    assert explain_cmd.run(args) == 0
    printed = capsys.readouterr().out
    assert "measured now on 48 items of its recorded training data (synthetic-mammo, regenerated)" in printed
    lines = {Path(line.split()[0]).name: line for line in printed.splitlines() if "_explanation.png" in line}
    assert "OUT OF DISTRIBUTION" in lines["constant_explanation.png"]
    assert "OUT OF DISTRIBUTION" not in lines["breast_explanation.png"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("<td class=ood>YES</td>") == 1 and "true label: not given" in html
    assert "INTENDED USE: Trained on synthetic data (synthetic-mammo) only; not for clinical use." in html
