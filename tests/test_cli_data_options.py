"""A model trained with ``--data-option`` is evaluated and explained on its own data from the command line.

``protozoo train`` records the dataset options in ``pretrained_cfg.extra["train_data"]``; ``protozoo
evaluate`` and ``protozoo explain --sources`` apply them to the same spec, and take ``--data-option``
on top, as ``train`` does.
"""

import json

import numpy as np
import pytest
from PIL import Image

import protozoo
from protozoo.cli import main

TRAIN = [
    "train",
    "--model",
    "protopnet_resnet18",
    "--data",
    "synthetic-parts",
    "--image-size",
    "32",
    "--num-samples",
    "8",
    "--epochs",
    "1",
    "--warm-epochs",
    "1",
    "--push-start",
    "1",
    "--last-layer-epochs",
    "0",
    "--batch-size",
    "8",
    "--prototypes-per-class",
    "1",
    "--data-option",
    "num_classes=2",
    "--no-progress",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("data_options_run")
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out / "model"


def test_train_records_the_data_options(trained):
    recorded = protozoo.load(trained).pretrained_cfg.extra["train_data"]
    assert recorded["spec"] == "synthetic-parts" and recorded["options"]["num_classes"] == 2


def test_evaluate_applies_the_recorded_options(trained, tmp_path, capsys):
    report = tmp_path / "report.json"
    # synthetic-parts has 6 classes by default: without the recorded num_classes=2 this is refused
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained),
                "--data",
                "synthetic-parts",
                "--num-samples",
                "12",
                "--out",
                str(report),
            ]
        )
        == 0
    )
    scores = json.loads(report.read_text())
    assert scores["num_samples"] == 12 and scores["metrics"]["classification"]["accuracy"] is not None
    capsys.readouterr()


def test_evaluate_data_option_goes_on_top(trained, capsys):
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained),
                "--data",
                "synthetic-parts",
                "--num-samples",
                "12",
                "--data-option",
                "num_classes=3",
            ]
        )
        == 2
    )
    assert "'synthetic-parts' has 3 classes but the model has 2" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(trained), "--data", "synthetic-parts", "--data-option", "oops"]) == 2
    assert "--data-option 'oops' is not KEY=VALUE" in capsys.readouterr().err


def test_explain_sources_apply_the_recorded_options_and_the_flags(trained, tmp_path, monkeypatch):
    import protozoo.cli.explain as explain_cmd

    seen = []
    real = explain_cmd.load_dataset

    def recording(spec, split, **options):
        dataset = real(spec, split, **options)
        seen.append(
            (spec, split, {k: v for k, v in options.items() if k != "transform"}, len(dataset), dataset.num_classes)
        )
        return dataset

    monkeypatch.setattr(explain_cmd, "load_dataset", recording)
    image = tmp_path / "case.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    assert (
        main(
            [
                "explain",
                "--model",
                str(trained),
                str(image),
                "--out",
                str(tmp_path / "explained"),
                "--top-k",
                "1",
                "--sources",
                "synthetic-parts",
                "--data-option",
                "decoy_prob=0.0",
            ]
        )
        == 0
    )
    ((spec, split, options, length, classes),) = seen
    assert (spec, split, length, classes) == ("synthetic-parts", "train", 8, 2)  # the 8 training images, 2 classes
    assert options["num_classes"] == 2 and options["decoy_prob"] == 0.0
