"""``protozoo evaluate``: table on stdout, JSON report on disk, errors as exit code 2."""

from __future__ import annotations

import json

import pytest
import torch

import protozoo
from protozoo.cli import SUBCOMMANDS, main
from protozoo.cli import evaluate as evaluate_cli


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setitem(SUBCOMMANDS, "evaluate", evaluate_cli)
    return main


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_resnet18", num_classes=6, prototypes_per_class=1, prototype_dim=8)
    return model.save_pretrained(tmp_path_factory.mktemp("model"))


def test_report(cli, saved_model, tmp_path, capsys):
    out = tmp_path / "report.json"
    args = ["evaluate", "--model", str(saved_model), "--data", "synthetic-parts", "--num-samples", "6",
            "--image-size", "64", "--metrics", "accuracy,consistency,stability,prototypes", "--out", str(out)]  # fmt: skip
    assert cli(args) == 0
    table = capsys.readouterr().out
    for name in ("accuracy", "auroc", "consistency", "stability", "mean_purity", "duplicate_pairs"):
        assert name in table
    report = json.loads(out.read_text())
    assert report["num_samples"] == 6 and report["split"] == "test"
    assert 0 <= report["metrics"]["consistency"]["score"] <= 100
    assert len(report["metrics"]["stability"]["per_prototype"]) == 6


def test_errors(cli, saved_model, capsys):
    base = ["evaluate", "--model", str(saved_model), "--num-samples", "2", "--image-size", "64"]
    assert cli([*base, "--data", "synthetic-parts", "--metrics", "accuracy,shape"]) == 2
    assert "unknown metrics ['shape']" in capsys.readouterr().err
    assert cli([*base, "--data", "synthetic-fundus"]) == 2
    assert "has 2 classes but the model has 6" in capsys.readouterr().err
    assert cli([*base, "--data", "synthetic-parts", "--metrics", "localization"]) == 2
    assert "needs items with a 'mask'" in capsys.readouterr().err


def test_prototypes_beside_posthoc_maps(cli, tmp_path, capsys):
    """``--metrics localization,posthoc``: one table, the prototype maps and every post-hoc map of every
    branch (BRAIxProtoPNet++: global and ensemble) on the same images; the JSON report has both."""
    torch.manual_seed(0)
    model = protozoo.create_model(
        "braix_protopnet_pp_resnet18", num_classes=3, prototypes_per_class=1, prototype_dim=8, feature_stage=2
    )
    saved = model.save_pretrained(tmp_path / "braix")
    out = tmp_path / "report.json"
    args = [
        "evaluate",
        "--model",
        str(saved),
        "--data",
        "synthetic-mammo",
        "--num-samples",
        "6",
        "--image-size",
        "64",
        "--metrics",
        "localization,posthoc",
        "--posthoc-methods",
        "gradcam,gradcam++,scorecam",
        "--out",
        str(out),
    ]
    assert cli(args) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("map "))
    names = [line.split("  ")[0].strip() for line in lines[header + 1 : header + 8]]
    assert names == [
        "prototypes (top of true class)",
        "gradcam [global]",
        "gradcam++ [global]",
        "scorecam [global]",
        "gradcam [ensemble]",
        "gradcam++ [ensemble]",
        "scorecam [ensemble]",
    ]
    metrics = json.loads(out.read_text())["metrics"]
    posthoc = metrics["posthoc"]
    assert posthoc["gradcam [global]"]["branch"] == "global" and posthoc["scorecam [ensemble]"]["map"] == "scorecam"
    assert {r["evaluated"] for r in posthoc.values()} == {metrics["localization"]["evaluated"]}
    assert all(r["class_source"] == metrics["localization"]["class_source"] == "true" for r in posthoc.values())
