"""Saving and loading: identical outputs, strict keys, clear errors, Hub cache and upload."""

import json
import shutil
import warnings

import pytest
import torch

import protozoo
from protozoo.hub import UntrainedWarning
from protozoo.serialization import WeightFileError

SMALL = dict(num_classes=3, prototypes_per_class=2, prototype_dim=16)


@pytest.fixture
def saved(tmp_path):
    model = protozoo.create_model("protopnet_resnet18", **SMALL).eval()
    model.provenance = [{"prototype": p, "image_id": f"img{p}", "h": 0, "w": 1} for p in range(6)]
    folder = model.save_pretrained(tmp_path / "model")
    return model, folder


def test_saved_files_and_identical_reload(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "prototypes.json"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "protopnet_resnet18"
    assert config["model_args"]["num_classes"] == 3
    reloaded = protozoo.load(str(folder))
    assert not reloaded.training
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), reloaded(x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.similarities, b.similarities)
    assert reloaded.provenance == model.provenance


def test_truncated_weight_file_names_the_file(saved):
    _, folder = saved
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(WeightFileError, match="model.safetensors.*truncated or corrupt"):
        protozoo.load(str(folder))


def test_garbage_weight_file_names_the_file(saved):
    _, folder = saved
    (folder / "model.safetensors").write_bytes(b"not a weight file at all")
    with pytest.raises(WeightFileError, match="model.safetensors"):
        protozoo.load(str(folder))


def test_weights_of_another_architecture_list_mismatched_keys(saved, tmp_path):
    _, folder = saved
    other = protozoo.create_model("protopnet_mobilenetv2", **SMALL).save_pretrained(tmp_path / "other")
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(WeightFileError, match="do not fit this model.*missing: backbone.body.*unexpected"):
        protozoo.load(str(folder))


def test_missing_files_explain_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json.*model.safetensors"):
        protozoo.load(str(tmp_path))


def test_other_num_classes_reinitialises_only_class_parts(saved):
    model, folder = saved
    with pytest.warns(UserWarning, match="num_classes=5.*re-initialised.*head.prototypes"):
        changed = protozoo.load(str(folder), num_classes=5)
    assert changed.num_classes == 5 and changed.num_prototypes == 10
    assert changed.last_layer.weight.shape == (5, 10)
    for key, value in model.state_dict().items():
        if key not in model.class_dependent:
            assert torch.equal(changed.state_dict()[key], value), key
    assert changed.provenance is None


def write_hf_cache(cache, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    """Lay files out exactly as huggingface_hub's cache does (models--org--repo/snapshots/<sha>)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo_dir / "snapshots" / commit)


def test_load_from_hf_hub_cache_offline(saved, tmp_path):
    model, folder = saved
    cache = tmp_path / "hf-cache"
    write_hf_cache(cache, "protozoo/protopnet-test", folder)
    reloaded = protozoo.load("hf-hub:protozoo/protopnet-test", cache_dir=cache)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x).logits, reloaded(x).logits)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        protozoo.load("hf-hub:protozoo/absent", cache_dir=cache)


class FolderApi:
    """A stand-in for HfApi that 'uploads' into a local folder."""

    def __init__(self, root):
        self.root = root

    def create_repo(self, repo_id, private=None, exist_ok=False):
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

    def upload_folder(self, repo_id, folder_path, commit_message):
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)
        return f"local://{repo_id}"


def test_push_to_hub_uploads_a_loadable_folder(saved, tmp_path):
    model, _ = saved
    url = model.push_to_hub("org/protopnet-demo", api=FolderApi(tmp_path / "remote"))
    assert url == "local://org/protopnet-demo"
    reloaded = protozoo.load(str(tmp_path / "remote" / "org" / "protopnet-demo"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x).logits, reloaded(x).logits)


def test_load_unknown_name_suggests():
    with pytest.raises(ValueError, match="did you mean 'protopnet_resnet18'"):
        protozoo.load("protopnet_resnt18")
    with pytest.raises(FileNotFoundError, match="neither a model folder"):
        protozoo.load("no/such/folder")


def test_load_registered_name_without_weights_warns_untrained():
    with pytest.warns(UntrainedWarning, match="no trained weights yet.*randomly initialised too"):
        model = protozoo.load("protopnet_resnet18", **SMALL)
    assert not model.training


def test_create_model_pretrained_without_weights_is_an_error():
    with pytest.raises(ValueError, match="has no trained weights yet"):
        protozoo.create_model("protopnet_resnet18", pretrained=True)


def test_registered_trained_weights_resolve_from_weights_dir(saved, tmp_path, monkeypatch):
    from protozoo import registry
    from protozoo.pretrained import PretrainedCfg

    model, folder = saved
    monkeypatch.setenv("PROTOZOO_WEIGHTS", str(tmp_path))
    shutil.copytree(folder, tmp_path / "protopnet_resnet18.unit")
    cfg = PretrainedCfg(architecture="protopnet_resnet18", tag="unit", weights_dir="protopnet_resnet18.unit")
    monkeypatch.setitem(registry._pretrained, "protopnet_resnet18", {**registry._pretrained["protopnet_resnet18"]})
    monkeypatch.setitem(registry._aliases, "unit-protopnet", "protopnet_resnet18.unit")
    registry.register_pretrained(cfg)
    assert "protopnet_resnet18.unit" in protozoo.list_models(pretrained=True)
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_alias = protozoo.load("unit-protopnet")
    by_create = protozoo.create_model("protopnet_resnet18.unit", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(by_alias(x).logits, model(x).logits)
        assert torch.equal(by_create(x).logits, model(x).logits)
