"""Where a tag's weights are found: $PROTOZOO_WEIGHTS, the checkout's weights/, the Hugging Face cache,
a Hub download; and the error, never an untrained model, when none has them.

The wheel-like install is simulated by taking the checkout's weights/ away
(``protozoo.hub.checkout_weights`` -> None); ``test_wheel_install_*`` builds and installs a real wheel.
"""

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import protozoo
from protozoo import hub
from protozoo.registry import resolve

NAME = "braix_protopnet_pp_efficientnet_lite0.synth_mammo"
REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"


@pytest.fixture
def wheel_like(monkeypatch, tmp_path):
    """No $PROTOZOO_WEIGHTS, no checkout weights/, an empty Hugging Face cache, offline."""
    monkeypatch.delenv("PROTOZOO_WEIGHTS", raising=False)
    monkeypatch.setattr(hub, "checkout_weights", lambda: None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def fill_hub_cache(cache: Path, repo_id: str, files: Path, commit: str = "0" * 40) -> Path:
    """Lay ``files`` out as huggingface_hub caches a downloaded model repo (blobs, a snapshot, refs/main)."""
    from huggingface_hub.file_download import repo_folder_name

    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (storage / "blobs").mkdir()
    for file in sorted(files.iterdir()):
        blob = storage / "blobs" / f"blob-{file.name}"
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    return snapshot


def test_a_tag_without_weights_is_an_error_naming_the_places_tried(wheel_like):
    for call in (
        lambda: protozoo.load("braix-protopnet++"),
        lambda: protozoo.create_model(NAME, pretrained=True),
        lambda: protozoo.load(NAME.split(".")[0]),
    ):  # the bare architecture names its trained tag
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # and no untrained model with a warning in its place
            with pytest.raises(protozoo.WeightsNotFoundError) as caught:
                call()
        message = str(caught.value)
        assert NAME in message and "$PROTOZOO_WEIGHTS: not set" in message
        assert "source checkout" in message and str(wheel_like / "hf-cache") in message
        assert "skipped, HF_HUB_OFFLINE is set" in message and resolve(NAME).hf_hub_id in message
        assert "set PROTOZOO_WEIGHTS" in message and "huggingface-cli download" in message
    assert "'braix-protopnet++'" in str(pytest.raises(FileNotFoundError, protozoo.load, "braix-protopnet++").value)
    assert protozoo.zoo.model_card(NAME) is None


def test_protozoo_weights_folder_is_used_first(wheel_like, monkeypatch):
    folder = wheel_like / "zoo"
    shutil.copytree(WEIGHTS / NAME, folder / NAME)
    monkeypatch.setenv("PROTOZOO_WEIGHTS", str(folder))
    assert hub.locate_weights(resolve(NAME)) == folder / NAME
    model = protozoo.load("braix-protopnet++")
    assert model.pretrained_cfg.name == NAME and model.provenance is not None
    reference = protozoo.load(WEIGHTS / NAME)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())


def test_an_empty_protozoo_weights_folder_falls_through_to_the_checkout(monkeypatch, tmp_path):
    if hub.checkout_weights() is None:
        pytest.skip("not running from a source checkout")
    monkeypatch.setenv("PROTOZOO_WEIGHTS", str(tmp_path))
    assert hub.locate_weights(resolve(NAME)) == WEIGHTS / NAME


def test_the_hugging_face_cache_is_read_offline(wheel_like):
    snapshot = fill_hub_cache(wheel_like / "hf-cache", resolve(NAME).hf_hub_id, WEIGHTS / NAME)
    assert hub.locate_weights(resolve(NAME)) == snapshot
    model = protozoo.load("braix-protopnet++")
    assert model.pretrained_cfg.hf_hub_id == resolve(NAME).hf_hub_id
    reference = protozoo.load(WEIGHTS / NAME)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    # an explicit cache_dir is read as well
    other = wheel_like / "other-cache"
    fill_hub_cache(other, resolve(NAME).hf_hub_id, WEIGHTS / NAME)
    shutil.rmtree(wheel_like / "hf-cache")
    assert protozoo.load(NAME, cache_dir=other).num_prototypes == reference.num_prototypes


def test_online_the_hub_is_asked_last_and_only_online(wheel_like, monkeypatch):
    asked = []

    def fake_download(repo, cache_dir=None):
        asked.append((repo, cache_dir))
        return WEIGHTS / NAME

    monkeypatch.setattr(hub, "hub_snapshot", fake_download)
    with pytest.raises(protozoo.WeightsNotFoundError):
        hub.locate_weights(resolve(NAME))
    assert asked == []  # HF_HUB_OFFLINE=1: no download attempted
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert hub.locate_weights(resolve(NAME)) == WEIGHTS / NAME
    assert asked == [(resolve(NAME).hf_hub_id, wheel_like / "hf-cache")]

    def failing(repo, cache_dir=None):
        raise OSError("connection refused")

    monkeypatch.setattr(hub, "hub_snapshot", failing)
    with pytest.raises(protozoo.WeightsNotFoundError, match="connection refused"):
        hub.locate_weights(resolve(NAME))


def test_an_architecture_with_no_trained_tag_still_builds_untrained_with_a_warning(wheel_like):
    with pytest.warns(protozoo.UntrainedWarning, match="no trained weights"):
        model = protozoo.load("protopnet_resnet18", num_classes=2, prototypes_per_class=1)
    assert model.config.num_classes == 2


@pytest.mark.slow
def test_wheel_install_without_weights_names_the_error_and_loads_from_protozoo_weights(tmp_path):
    """``pip wheel --no-deps .`` installed in a fresh venv: no weights inside; $PROTOZOO_WEIGHTS makes it load."""
    source = tmp_path / "src"
    source.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / item, source / item)
    shutil.copytree(REPO / "protozoo", source / "protozoo", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("protozoo-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "protozoo/py.typed" in names and "protozoo/zoo_tags.py" in names
    assert not [n for n in names if n.startswith("weights/") or n.endswith(".safetensors")]  # no weights inside
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    lines = zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
    assert f"Version: {protozoo.__version__}" in lines  # the one version source
    core = [line for line in lines if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert core and not [line for line in core if any(n in line for n in ("matplotlib", "pydicom", "grad-cam"))]

    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The fresh venv sees the test environment's torch, timm... (a path line, not its editable protozoo hook).
    import torch as _torch

    (site / "deps.pth").write_text(str(Path(_torch.__file__).parents[1]) + "\n")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    script = textwrap.dedent("""
        import os
        import protozoo
        assert protozoo.__file__.startswith(os.environ["EXPECT_SITE"]), protozoo.__file__
        try:
            protozoo.load("braix-protopnet++")
        except protozoo.WeightsNotFoundError as err:
            print("ERROR", err)
        else:
            print("LOADED")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PROTOZOO_WEIGHTS", "PYTHONPATH")}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "empty-cache"),
        "OMP_NUM_THREADS": "1",
        "EXPECT_SITE": str(site),
    }
    run = subprocess.run([str(python), "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ERROR") and NAME in run.stdout and "set PROTOZOO_WEIGHTS" in run.stdout
    run = subprocess.run(
        [str(python), "-c", script],
        env=env | {"PROTOZOO_WEIGHTS": str(WEIGHTS)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "LOADED"
