"""Model cards with the Hub's metadata: the zoo's (generated from config.json + metrics.json), and those
``save_pretrained`` / ``push_to_hub`` write for any model with measured results."""

import json
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import protozoo
from protozoo.hub import CHECKSUM_KEY, file_sha256, locate_weights
from protozoo.model_card import CARD_NAME, METRICS, METRICS_NAME, read_metrics
from protozoo.registry import resolve

TRAINED = protozoo.list_models(pretrained=True)
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_card_has_hub_metadata_and_the_measured_results(name):
    folder = locate_weights(resolve(name))
    card = ModelCard.load(folder / CARD_NAME)
    data = card.data
    assert data.library_name == "protozoo" and data.license == "apache-2.0"
    assert data.model_name == name and data.base_model and data.datasets and "protozoo" in data.tags
    metrics = read_metrics(folder)
    assert metrics is not None and metrics[CHECKSUM_KEY] == file_sha256(folder / "model.safetensors")  # these weights'
    by_name = {r.metric_name: r for r in data.eval_results}
    assert {"Accuracy", "AUROC (binary, or macro one-vs-rest)"} <= set(by_name)
    for key, value in metrics["results"].items():  # every result in metrics.json is in the model-index, equal
        if key == "lesion_auroc":
            for lesion, v in value.items():
                assert by_name[f"Lesion AUROC: {lesion}"].metric_value == v
        else:
            assert by_name[METRICS[key][2]].metric_value == value
            assert f"| {METRICS[key][0]} | {value} |" in card.text  # and in the table people read
    assert all(r.dataset_split == "test" and r.dataset_type == metrics["dataset"]["spec"] for r in data.eval_results)
    assert "not a clinical model" in card.text.lower() and "## Intended use" in card.text


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_card_is_what_build_zoo_model_generates(name, tmp_path):
    """The card is generated (``build_zoo_model.py --card``), not hand-edited: regenerating it changes nothing."""
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import build_zoo_model
    finally:
        sys.path.remove(str(REPO / "examples"))
    folder = locate_weights(resolve(name))
    written = build_zoo_model.write_card(
        tmp_path, name, build_zoo_model.SPECS[name], protozoo.load(folder), read_metrics(folder)
    )
    assert written.read_text() == (folder / CARD_NAME).read_text()


def test_card_names_the_seed_the_recipe_records(tmp_path):
    """A build at another seed (``build_zoo_model.py --seed 3``) says so on its card; the zoo's say seed 0."""
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import build_zoo_model
    finally:
        sys.path.remove(str(REPO / "examples"))
    name = "protopnet_efficientnet_lite0.synth_parts"
    folder = locate_weights(resolve(name))
    recipe = json.loads((folder / "recipe.json").read_text())
    assert recipe["seed"] == 0 and "1024 generated training images, seed 0;" in (folder / CARD_NAME).read_text()
    (tmp_path / "recipe.json").write_text(json.dumps(recipe | {"seed": 3}))
    card = build_zoo_model.write_card(
        tmp_path, name, build_zoo_model.SPECS[name], protozoo.load(folder), read_metrics(folder)
    ).read_text()
    assert "1024 generated training images, seed 3;" in card
    assert build_zoo_model.TEST_SEED == read_metrics(folder)["dataset"]["options"]["seed"]  # the one test split


def test_braix_card_keeps_the_grad_cam_comparison():
    folder = locate_weights(resolve("braix_protopnet_pp_efficientnet_lite0.synth_mammo"))
    rows = read_metrics(folder)["localization_comparison"]
    assert [r["map"] for r in rows] == [
        "prototypes (top of the true class)",
        "Grad-CAM [global]",
        "Grad-CAM [ensemble]",
        "lesion masks themselves (the ceiling)",
    ]
    ceiling = rows[-1]
    assert ceiling["pointing_game"] == ceiling["iou"] == 1.0
    assert all(r["activation_precision"] <= ceiling["activation_precision"] for r in rows)
    text = (folder / CARD_NAME).read_text()
    for r in rows:
        assert f"| {r['map']} | {r['pointing_game']} | {r['activation_precision']} | {r['iou']} |" in text


def small_model():
    torch.manual_seed(0)
    return protozoo.create_model(
        "protopnet_resnet18", backbone="test_resnet", num_classes=2, prototypes_per_class=1, prototype_dim=8
    )


RESULTS = {
    "dataset": {"spec": "synthetic-parts", "split": "test", "options": {"num_classes": 2}},
    "results": {"accuracy": 0.75, "auroc": 0.8, "consistency": 40.0},
}


def test_save_pretrained_with_metrics_writes_metrics_and_a_card(tmp_path):
    model = small_model()
    model.save_pretrained(tmp_path / "m", metrics=RESULTS)
    card = ModelCard.load(tmp_path / "m" / CARD_NAME)
    assert card.data.library_name == "protozoo" and card.data.license == "other"  # no license declared: said so
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {
        ("accuracy", 0.75),
        ("roc_auc", 0.8),
        ("consistency", 40.0),
    }
    assert card.data.datasets == ["synthetic-parts"] and "synthetic-data" in card.data.tags
    saved = json.loads((tmp_path / "m" / METRICS_NAME).read_text())
    assert saved["results"] == RESULTS["results"] and saved[CHECKSUM_KEY]

    loaded = protozoo.load(tmp_path / "m")
    assert loaded.metrics["results"] == RESULTS["results"]
    loaded.save_pretrained(tmp_path / "copy")  # the same weights: their recorded results and card go along
    assert (tmp_path / "copy" / CARD_NAME).is_file() and read_metrics(tmp_path / "copy")["results"] == RESULTS[
        "results"
    ]
    with torch.no_grad():
        loaded.head.last_layer.weight.add_(1.0)  # other weights: the old results no longer describe them
    loaded.save_pretrained(tmp_path / "copy")
    assert not (tmp_path / "copy" / METRICS_NAME).exists() and not (tmp_path / "copy" / CARD_NAME).exists()


def test_save_pretrained_without_metrics_writes_no_card(tmp_path):
    small_model().save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_metrics_of_unknown_form_are_refused_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown results \\['acc'\\]"):
        small_model().save_pretrained(tmp_path, metrics={"results": {"acc": 0.5}})
    with pytest.raises(ValueError, match="'results' object"):
        small_model().save_pretrained(tmp_path, metrics={"accuracy": 0.5})


class FakeApi:
    def __init__(self):
        self.uploaded = {}

    def create_repo(self, repo_id, private=None, exist_ok=False):
        self.repo = repo_id

    def upload_folder(self, repo_id, folder_path, commit_message):
        self.uploaded = {p.name: p.read_text() for p in Path(folder_path).iterdir() if p.suffix in (".md", ".json")}
        return "https://huggingface.co/org/model/commit/0"


def test_push_to_hub_uploads_the_card(tmp_path):
    api = FakeApi()
    small_model().push_to_hub("org/my-model", api=api, metrics=RESULTS)
    card = ModelCard(api.uploaded[CARD_NAME])
    assert card.data.library_name == "protozoo" and len(card.data.eval_results) == 3
    assert json.loads(api.uploaded[METRICS_NAME])["results"] == RESULTS["results"]
    api = FakeApi()
    small_model().push_to_hub("org/plain", api=api)  # no results: a card with the metadata all the same
    card = ModelCard(api.uploaded[CARD_NAME])
    assert card.data.library_name == "protozoo" and not card.data.eval_results
    assert 'protozoo.load("hf-hub:org/plain")' in card.text
