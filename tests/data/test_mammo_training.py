"""Paired real mammograms (items with only ``views``) train and push with the multi-view head."""

from __future__ import annotations

from pathlib import Path

import torch
from fixtures import make_cbis_breasts  # tests/data is on sys.path

from protozoo.data import load_dataset
from protozoo.train import Recipe, fit
from protozoo.train.session import prepare_run

TINY = dict(backbone="test_resnet", feature_stage=-2, prototypes_per_class=1, prototype_dim=8)


def test_cbis_ddsm_pairs_train_and_push_a_multiview_model(tmp_path: Path) -> None:
    root = make_cbis_breasts(tmp_path / "cbis", per_class=2)
    spec = f"cbis-ddsm:{root}"
    raw = load_dataset(spec, "train")
    assert len(raw) == 4 and all(set(raw[i]) == {"views", "label", "id"} for i in range(4))  # no top-level image

    run = prepare_run("protopnet_multiview_resnet18", spec, image_size=32, **TINY)
    assert run.model.config.in_chans == 1 and run.model.num_classes == 2 and run.val is None  # no val, no test CSV
    recipe = Recipe(epochs=1, warm_epochs=1, push_start=1, push_every=1, last_layer_epochs=0, batch_size=4)
    result = fit(
        run.model,
        run.train,
        recipe=recipe,
        push_data=run.push,
        out_dir=tmp_path / "run",
        progress=False,
        log=lambda line: None,
    )
    assert [row["kind"] for row in result.history] == ["train", "push"]

    # Every prototype was pushed onto a latent patch of one view of a breast of its own class.
    model = result.model.eval()
    breasts = {run.push[i]["id"]: run.push[i] for i in range(len(run.push))}
    assert len(model.provenance) == model.num_prototypes
    for row in model.provenance:
        breast_id, _, view = row["image_id"].rpartition("/")
        item = breasts[breast_id]
        assert item["label"] == row["class"] == int(model.prototype_class[row["prototype"]])
        h, w = row["feature_hw"]
        with torch.no_grad():
            z = model.latent(item["views"][view]["image"][None])[0, :, h, w]
        assert (z - model.prototypes[row["prototype"]]).abs().max() < 1e-5
