"""Issue #18: every file protozoo writes is as readable as the user's umask allows (safetensors
alone used to come out 0600 beside a 0644 config.json)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import protozoo
import protozoo.cli
from protozoo.serialization import current_umask, write_json, write_state_dict


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()}


def test_current_umask_reads_the_process_umask(umask) -> None:
    assert current_umask() == umask


def test_weights_and_json_get_the_umask_mode(umask, tmp_path) -> None:
    write_state_dict({"w": torch.zeros(3)}, tmp_path / "w.safetensors")
    write_json({"a": 1}, tmp_path / "a.json")
    model = protozoo.create_model(
        "protopnet_resnet18",
        backbone="test_resnet",
        feature_stage=-2,
        num_classes=2,
        prototypes_per_class=1,
        prototype_dim=8,
    )
    model.save_pretrained(tmp_path / "model")
    modes = _modes(tmp_path)
    assert {"w.safetensors", "a.json", "model/config.json", "model/model.safetensors"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)


def test_a_training_run_and_an_explanation_write_every_file_with_the_umask_mode(tmp_path) -> None:
    old = os.umask(0o027)  # group may read, others nothing: 0640 files, 0750 folders
    try:
        start = protozoo.create_model(
            "protopnet_resnet18",
            backbone="test_resnet",
            feature_stage=-2,
            num_classes=2,
            prototypes_per_class=1,
            prototype_dim=8,
        )
        start.save_pretrained(tmp_path / "start")
        assert (
            protozoo.cli.main(
                [
                    "train",
                    "--model",
                    str(tmp_path / "start"),
                    "--data",
                    "synthetic-parts",
                    "--image-size",
                    "32",
                    "--num-samples",
                    "8",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "8",
                    "--data-option",
                    "num_classes=2",
                    "--no-progress",
                    "--out",
                    str(tmp_path / "run"),
                ]
            )
            == 0
        )
        image = tmp_path / "in.png"
        Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(image)
        os.chmod(image, 0o644)
        assert (
            protozoo.cli.main(
                [
                    "explain",
                    str(image),
                    "--model",
                    str(tmp_path / "run" / "model"),
                    "--out",
                    str(tmp_path / "explained"),
                    "--top-k",
                    "1",
                ]
            )
            == 0
        )
    finally:
        os.umask(old)
    for folder in ("run", "explained"):
        modes = _modes(tmp_path / folder)
        assert modes and modes == dict.fromkeys(modes, 0o640), (folder, {k: oct(v) for k, v in modes.items()})
    for name in ("checkpoint.safetensors", "model/model.safetensors", "model/config.json", "final_metrics.json"):
        assert name in _modes(tmp_path / "run")
    assert any(name.endswith(".png") for name in _modes(tmp_path / "explained"))
