"""``protozoo train --model-option KEY=VALUE`` sets architecture options (foreground_only, input_blur,
add_on_norm...) that the saved model keeps; a wrong key or value is refused before training."""

import pytest
import torch

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
    "--push-start",
    "1",
    "--last-layer-epochs",
    "0",
    "--batch-size",
    "8",
    "--prototypes-per-class",
    "1",
    "--no-progress",
]
OPTIONS = ["--model-option", "foreground_only=true", "--model-option", "input_blur=0.5"]


def test_the_options_reach_the_saved_model(tmp_path):
    assert main([*TRAIN, *OPTIONS, "--model-option", "add_on_norm=true", "--out", str(tmp_path)]) == 0
    model = protozoo.load(tmp_path / "model").eval()
    assert model.config.foreground_only is True and model.config.add_on_norm is True
    assert model.config.input_blur == 0.5 and model.backbone.input_blur == 0.5
    again = protozoo.load(tmp_path / "model").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x).logits, again(x).logits)


def test_info_lists_the_options(capsys):
    assert main(["info", "protopnet_efficientnet_lite0"]) == 0
    options = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("options"))
    assert "input_blur=1.0" in options and "add_on_norm=True" in options and "--model-option" in options


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("foregrund_only=true", "unknown architecture arguments ['foregrund_only']"),
        ("input_blur", "--model-option 'input_blur' is not KEY=VALUE"),
        ("input_blur=soft", "input_blur must be a sigma >= 0"),
    ],
)
def test_a_wrong_option_is_refused_before_training(tmp_path, capsys, option, says):
    assert main([*TRAIN, "--model-option", option, "--out", str(tmp_path / "run")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run" / "model").exists()


def test_two_prototype_counts_that_disagree_are_refused(tmp_path, capsys):
    argv = [*TRAIN, "--model-option", "prototypes_per_class=2", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "disagree" in capsys.readouterr().err
