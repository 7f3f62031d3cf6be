"""The explanation benchmark on a tiny run: every score is its evaluator's, rows resume, files are there."""

from __future__ import annotations

import json
import math

import pytest
import torch

import protozoo
from protozoo.backbones import Backbone
from protozoo.benchmark import BenchmarkOptions, run
from protozoo.benchmark.classifier import PlainClassifier, load_classifier
from protozoo.benchmark.faithfulness import faithfulness
from protozoo.benchmark.maps import dataset_maps
from protozoo.benchmark.models import evaluation_split
from protozoo.benchmark.rows import row_key
from protozoo.benchmark.scoring import nanmean
from protozoo.benchmark.shortcut import TaggedTest
from protozoo.data import build_transforms, resolve_data_config
from protozoo.evaluate import classification, localization, posthoc_localization
from protozoo.evaluate.localization import per_image_localization, per_image_pixel_scores

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("captum")

TINY = dict(
    backbones=("resnet18",),
    inits=("random",),
    methods=("gradcam", "gradcam++", "prototypes"),
    epochs=1,
    last_layer_epochs=0,
    image_size=64,
    train_samples=16,
    test_samples=8,
    faithfulness_samples=2,
    perturbations=2,
    batch_size=8,
    shortcut_figures=True,
)
LOCALIZATION = ("pointing_game", "iou", "dice", "activation_precision")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    lines: list[str] = []
    rows = run(out, progress=False, log=lines.append, **TINY)
    return out, rows, lines


def _models(out):
    """The trained pair, reloaded from the benchmark's folder as a user would."""
    folder = out / "models" / "resnet18__random"
    protopnet = protozoo.load(str(folder / "protopnet" / "model")).eval()
    classifier = load_classifier(PlainClassifier(Backbone("resnet18"), 2), folder / "classifier.safetensors").eval()
    return protopnet, classifier


def _test_data(protopnet):
    """The test split with the eval transform of the saved model's own config (crop_pct 1: the whole image)."""
    assert protopnet.pretrained_cfg.crop_pct == 1.0
    transform = build_transforms(resolve_data_config(protopnet), train=False)
    return evaluation_split(BenchmarkOptions(**TINY), transform)


def _close(a, b):
    return (a is None and (b is None or math.isnan(b))) or a == pytest.approx(b, abs=1e-6)


def test_every_score_is_its_evaluators(tiny):
    out, rows, _ = tiny
    protopnet, classifier = _models(out)
    test = _test_data(protopnet)
    for row in rows:
        method = row["method"]
        model = protopnet if method == "prototypes" else classifier
        assert row["model"] == ("protopnet" if method == "prototypes" else "classifier")
        if method == "prototypes":
            expected = localization(protopnet, test, batch_size=8)
        else:
            expected = posthoc_localization(classifier, test, method=method, batch_size=8)
        for name in LOCALIZATION:
            assert _close(row[name], getattr(expected, name)), (method, name)
        assert row["evaluated"] == expected.evaluated
        scores = classification(model, test, batch_size=8)
        assert row["accuracy"] == pytest.approx(scores.accuracy) and _close(row["auroc"], scores.auroc)
        maps = dataset_maps(method, model, test, batch_size=8)
        pixel = per_image_pixel_scores(maps.maps, maps.masks)
        for name in ("explanation_f1", "explanation_precision", "explanation_recall", "energy"):
            assert _close(row[name], nanmean(pixel[name])), (method, name)
        tagged = dataset_maps(
            method,
            model,
            TaggedTest(evaluation_split(BenchmarkOptions(**TINY), None, tagged_raw=True), test.transform),
            batch_size=8,
        )
        assert _close(row["tag_energy"], nanmean(per_image_pixel_scores(tagged.maps, tagged.masks)["energy"]))
        assert _close(
            row["tag_pointing_game"], nanmean(per_image_localization(tagged.maps, tagged.masks)["pointing_game"])
        )
        images = torch.stack([test[i]["image"] for i in range(2)])
        labels = torch.tensor([int(test[i]["label"]) for i in range(2)])
        faithful = faithfulness(method, model, images, labels, perturbations=2, seed=0)
        assert row["infidelity"] == pytest.approx(faithful["infidelity"], rel=1e-4)
        assert row["max_sensitivity"] == pytest.approx(faithful["max_sensitivity"], rel=1e-4, abs=1e-7)


def test_score_cam_maps_are_the_evaluators(tiny):
    """Score-CAM (too slow for the tiny run's rows) is made as posthoc_localization makes it."""
    out, _, _ = tiny
    protopnet, classifier = _models(out)
    test = torch.utils.data.Subset(_test_data(protopnet), [0])
    maps = dataset_maps("scorecam", classifier, test, batch_size=8)
    expected = posthoc_localization(classifier, test, method="scorecam", batch_size=8)
    got = per_image_localization(maps.maps, maps.masks)
    for name in LOCALIZATION:
        assert _close(nanmean(got[name]), getattr(expected, name)), name


def test_pixel_f1_is_dice_and_precision_recall_are_counts():
    maps = torch.zeros(1, 4, 4)
    maps[0, :2, :2] = 1.0  # 4 predicted pixels
    masks = torch.zeros(1, 1, 4, 4)
    masks[0, 0, 1:3, 1:3] = 1.0  # 4 lesion pixels, 1 shared
    pixel = per_image_pixel_scores(maps, masks)
    assert pixel["explanation_precision"].item() == pytest.approx(1 / 4)
    assert pixel["explanation_recall"].item() == pytest.approx(1 / 4)
    assert pixel["explanation_f1"].item() == pytest.approx(per_image_localization(maps, masks)["dice"].item())
    assert pixel["energy"].item() == pytest.approx(1 / 4)  # one of the four unit-mass pixels
    assert pixel["explanation_f1"].isnan().item() is False
    assert per_image_pixel_scores(maps, torch.zeros(1, 1, 4, 4))["explanation_f1"].isnan().all()


def test_outputs(tiny):
    out, rows, lines = tiny
    assert [(r["backbone"], r["init"], r["method"]) for r in rows] == [
        ("resnet18", "random", m) for m in TINY["methods"]
    ]
    assert all(r["seed"] == 0 and r["options"]["epochs"] == 1 and r["status"] == "ok" for r in rows)
    assert json.loads((out / "results.json").read_text()) == rows
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {
        "backbone",
        "init",
        "method",
        "accuracy",
        "auroc",
        "explanation_f1",
        "pointing_game",
        "infidelity",
        "max_sensitivity",
        "options",
    } <= set(header)
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3  # the bars, the scatter, the tag figures
    assert "<td>resnet18</td><td>random</td><td>prototypes</td>" in report
    assert (out / "figures" / "localization_by_architecture.png").stat().st_size > 1000
    assert any(line.startswith("[1/1] resnet18 random") for line in lines)


def test_resume_skips_done_rows_and_redoes_a_missing_one(tiny):
    out, rows, _ = tiny
    kept = out / "rows" / f"{row_key('resnet18', 'random', 'gradcam')}.json"
    lost = out / "rows" / f"{row_key('resnet18', 'random', 'prototypes')}.json"
    stamp = kept.stat().st_mtime_ns
    lines: list[str] = []
    assert run(out, progress=False, log=lines.append, **TINY) == rows
    assert any("rows done, skipped" in line for line in lines)
    lost.unlink()  # a benchmark killed before this row was written
    again = run(out, progress=False, log=lines.append, **TINY)
    assert kept.stat().st_mtime_ns == stamp  # done rows are not recomputed
    assert {k: v for k, v in again[-1].items() if "seconds" not in k} == {
        k: v for k, v in rows[-1].items() if "seconds" not in k
    }


def test_other_options_into_the_same_folder_are_refused(tiny):
    out, _, _ = tiny
    with pytest.raises(ValueError, match="epochs was 1, now 2"):
        run(out, progress=False, log=lambda _: None, **(TINY | {"epochs": 2}))


def test_command_line_continues_the_run_and_prints_the_table(tiny, capsys):
    from protozoo.cli import main

    out, rows, _ = tiny
    argv = [
        "benchmark",
        "--out",
        str(out),
        "--backbones",
        "resnet18",
        "--init",
        "random",
        "--methods",
        "gradcam,gradcam++,prototypes",
        "--epochs",
        "1",
        "--last-layer-epochs",
        "0",
        "--image-size",
        "64",
        "--num-samples",
        "16",
        "--test-samples",
        "8",
        "--faithfulness-samples",
        "2",
        "--perturbations",
        "2",
        "--batch-size",
        "8",
        "--shortcut-figures",
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "rows done, skipped" in printed and "| resnet18 | random | gradcam |" in printed
    assert main(["benchmark", "--out", str(out), "--methods", "gradcam,lime"]) == 2
    assert "methods must be" in capsys.readouterr().err


def test_imagenet_without_an_offline_source_says_so(tmp_path):
    from protozoo.backbone_weights import available_sources

    if available_sources("resnet18"):
        pytest.skip("this machine has resnet18 ImageNet weights cached")
    rows = run(tmp_path, progress=False, log=lambda _: None, **(TINY | {"inits": ("imagenet",)}))
    assert {r["status"] for r in rows} == {"unavailable"}
    assert all(
        "no pretrained weights found for backbone 'resnet18'" in r["note"] and r.get("accuracy") is None for r in rows
    )
    assert "not run: no pretrained weights" in (tmp_path / "report.html").read_text()


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="no ProtoPNet model for backbone 'resnt18'"):
        from protozoo.benchmark.transfer import protopnet_name

        protopnet_name("resnt18")
    with pytest.raises(ValueError, match="shortcut needs a synthetic dataset"):
        BenchmarkOptions(data="folder:/x", shortcut=0.5)
    with pytest.raises(ValueError, match="inits must be"):
        BenchmarkOptions(inits=("imagenet21k",))
    with pytest.raises(ValueError, match=r"data_options \['seed'\] are the benchmark's own"):
        BenchmarkOptions(data_options={"seed": 3})


def test_a_missing_weight_file_is_an_error_not_a_row(tmp_path):
    options = BenchmarkOptions(
        **(TINY | {"inits": ("imagenet",), "backbone_weights": {"resnet18": "nope.safetensors"}})
    )
    with pytest.raises(FileNotFoundError, match=r"backbone_weights\['resnet18'\]: 'nope.safetensors' does not exist"):
        run(tmp_path, options, progress=False, log=lambda _: None)


def test_imagenet_rows_from_a_backbone_weights_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(weights))
    rows = run(
        tmp_path / "out",
        progress=False,
        log=lambda _: None,
        report=False,
        **(
            TINY
            | {
                "inits": ("imagenet",),
                "methods": ("gradcam",),
                "faithfulness_samples": 0,
                "backbone_weights": {"resnet18": str(weights)},
            }
        ),
    )
    assert rows[0]["status"] == "ok" and rows[0]["init_source"] == f"file {weights}"
    assert rows[0]["infidelity"] is None  # faithfulness_samples=0: not measured, not made up
