"""``protozoo push --model DIR --data SPEC [--out DIR] [--data-option KEY=VALUE]``."""

import json

import pytest
import torch

import protozoo
from protozoo.cli import main
from protozoo.cli.push import push_dataset
from protozoo.serialization import write_json

SIZE = 64  # px: a 2 x 2 latent map with resnet18
TRAIN_DATA = {"spec": "synthetic-parts", "options": {"seed": 0, "num_classes": 2, "image_size": SIZE, "num_samples": 8}}


@pytest.fixture
def unpushed(tmp_path):
    """A saved, never pushed model that records the data it was trained on (as ``protozoo train`` does)."""
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, prototypes_per_class=2, prototype_dim=16)
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(3, SIZE, SIZE), extra={"train_data": TRAIN_DATA})
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    return folder


def test_push_projects_every_prototype_onto_its_source_patch_and_saves(unpushed, tmp_path, capsys):
    out = tmp_path / "pushed"
    assert (
        main(["push", "--model", str(unpushed), "--data", "synthetic-parts", "--out", str(out), "--no-progress"]) == 0
    )
    printed = capsys.readouterr().out
    assert "pushed 4 prototypes onto 8 images" in printed and "unique_source=none" in printed
    assert not (unpushed / "prototypes.json").exists()  # --out: the model folder is left as it was
    pushed = protozoo.load(out)
    assert len(pushed.provenance) == pushed.num_prototypes == 4
    assert pushed.pretrained_cfg.extra["train_data"]["spec"] == "synthetic-parts"
    data, _ = push_dataset(pushed, "synthetic-parts", "train", image_size=None, num_samples=None, data_options={})
    assert len(data) == 8 and data.num_classes == 2  # the recorded options: 8 images of 2 classes, not the defaults
    by_id = {data[i]["id"]: i for i in range(len(data))}
    for p, row in enumerate(pushed.provenance):
        item = data[by_id[row["image_id"]]]
        assert row["class"] == item["label"] == int(pushed.prototype_class[p])  # class-specific
        with torch.no_grad():
            z = pushed.latent(item["image"][None])  # (1, D, H, W)
        h, w = row["feature_hw"]
        assert (pushed.prototypes[p] - z[0, :, h, w]).abs().max() < 1e-5  # the prototype is that patch
    before = protozoo.load(unpushed)
    assert not torch.allclose(before.prototypes, pushed.prototypes)


def test_push_in_place_takes_the_runs_recipe_and_flags_override_it(unpushed, capsys):
    write_json({"unique_source": "per_class", "push_foreground": True}, unpushed.parent / "recipe.json")
    assert main(["push", "--model", str(unpushed), "--data", "synthetic-parts", "--no-progress"]) == 0
    assert "unique_source=per_class, foreground=True, lesions=False" in capsys.readouterr().out
    provenance = json.loads((unpushed / "prototypes.json").read_text())
    for c in (0, 1):  # per_class: the two prototypes of a class come from two images
        assert len({row["image_id"] for row in provenance if row["class"] == c}) == 2
    assert (
        main(
            [
                "push",
                "--model",
                str(unpushed),
                "--data",
                "synthetic-parts",
                "--unique-source",
                "none",
                "--no-foreground",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "unique_source=none, foreground=False" in capsys.readouterr().out


def test_push_data_options_reach_the_dataset_and_a_misfit_is_one_line(unpushed, capsys):
    code = main(
        [
            "push",
            "--model",
            str(unpushed),
            "--data",
            "synthetic-parts",
            "--data-option",
            "num_classes=3",
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("protozoo push: error:") and "num_classes=3" in err and "num_classes=2" in err
    assert (
        main(
            [
                "push",
                "--model",
                str(unpushed),
                "--data",
                "synthetic-parts",
                "--data-option",
                "num_samples",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "is not KEY=VALUE" in capsys.readouterr().err


def test_push_of_a_registered_name_needs_out(capsys):
    assert main(["push", "--model", "protopnet_efficientnet_lite0.synth_parts", "--data", "synthetic-parts"]) == 2
    assert "give --out" in capsys.readouterr().err
