"""Issue #18: ``protozoo train --epochs N`` scales the rest of the default schedule with N and ends
with a metrics summary; the Recipe dataclass itself (``protozoo demo``, ``build_zoo_model``) is unchanged."""

from __future__ import annotations

import argparse
import json

import pytest

import protozoo
import protozoo.cli
from protozoo.cli.train import SCHEDULE_FIELDS, add_parser, recipe_from_args, scale_schedule
from protozoo.train import Recipe
from protozoo.train.tasks import task_for


def _args(*argv: str) -> argparse.Namespace:
    subparsers = argparse.ArgumentParser().add_subparsers()
    add_parser(subparsers, "train")
    return subparsers.choices["train"].parse_args(["--model", "m", "--data", "d", "--out", "o", *argv])


def test_the_recipe_dataclass_keeps_chens_schedule() -> None:
    """``protozoo demo`` and ``examples/build_zoo_model.py`` build Recipe(...) themselves: its defaults stay."""
    recipe = Recipe()
    assert (
        recipe.epochs,
        recipe.warm_epochs,
        recipe.push_start,
        recipe.push_every,
        recipe.last_layer_epochs,
        recipe.lr_step,
    ) == (30, 5, 10, 10, 20, 5)


@pytest.mark.parametrize("epochs", [1, 2, 3, 6, 12, 30, 90])
def test_every_epochs_value_gives_a_valid_schedule_of_the_same_shape(epochs) -> None:
    base = Recipe()
    recipe = recipe_from_args(_args("--epochs", str(epochs)))  # the Recipe checks would raise on a bad one
    assert recipe.epochs == epochs and 0 <= recipe.warm_epochs < max(epochs, 2)
    for name in SCHEDULE_FIELDS:
        value, base_value = getattr(recipe, name), getattr(base, name)
        if base_value == 0:  # a phase the recipe does not have is not created
            assert value == 0, name
            continue
        target = base_value * epochs / base.epochs  # the same fraction of the run
        capped = {"warm_epochs": epochs - 1, "push_start": epochs}.get(name)
        assert abs(value - target) <= 0.5 or value == 1 or value == capped, (name, value, target)
    pushes = [step for step in recipe.plan() if step.kind == "push"]
    last_layer = [step for step in recipe.plan() if step.phase == "last_layer"]
    assert pushes and len(last_layer) == len(pushes) * recipe.last_layer_epochs
    if epochs == base.epochs:
        assert recipe == base  # the default length is the default schedule


def test_flags_given_are_kept_and_the_rest_scales() -> None:
    recipe = recipe_from_args(_args("--epochs", "2", "--warm-epochs", "1"))
    assert (recipe.warm_epochs, recipe.last_layer_epochs) == (1, 1)  # was 20 last-layer epochs per push
    assert recipe_from_args(_args("--epochs", "60", "--last-layer-epochs", "3")).last_layer_epochs == 3
    assert recipe_from_args(_args()).warm_epochs == 5  # no --epochs: the default recipe as it is


def test_a_recipe_file_is_never_scaled(tmp_path) -> None:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"epochs": 12, "warm_epochs": 4, "last_layer_epochs": 6}))
    recipe = recipe_from_args(_args("--recipe", str(path), "--epochs", "8"))
    assert (recipe.epochs, recipe.warm_epochs, recipe.last_layer_epochs) == (8, 4, 6)


def test_a_family_default_scales_from_its_own_schedule() -> None:
    braix = protozoo.create_model("braix_protopnet_pp_resnet18", num_classes=2, prototypes_per_class=1, prototype_dim=8)
    default = task_for(braix).recipe()
    recipe = recipe_from_args(_args("--epochs", "6"), default)
    assert recipe.global_epochs == max(1, round(default.global_epochs * 6 / default.epochs))
    assert recipe.unique_source == default.unique_source and recipe.push_lesions == default.push_lesions
    assert scale_schedule(default, default.epochs) == {
        k: getattr(default, k) for k in SCHEDULE_FIELDS if getattr(default, k)
    }


def test_train_epochs_2_runs_and_ends_with_a_metrics_summary(tmp_path, capsys) -> None:
    model = protozoo.create_model(
        "protopnet_resnet18",
        backbone="test_resnet",
        feature_stage=-2,
        num_classes=2,
        prototypes_per_class=1,
        prototype_dim=8,
    )
    model.save_pretrained(tmp_path / "start")
    out = tmp_path / "run"
    argv = [
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
        "2",
        "--batch-size",
        "8",
        "--data-option",
        "num_classes=2",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert protozoo.cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "--epochs 2 scales the default 30-epoch schedule: warm_epochs 5 -> 1" in printed
    assert "last_layer_epochs 20 -> 1" in printed
    summary = json.loads((out / "final_metrics.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(row.get("phase") == "last_layer" for row in history) == 2  # one after each of the 2 pushes
    assert summary["split"] == "val" and summary["n"] > 0 and 0 <= summary["accuracy"] <= 1
    # The summary scores the saved model: the last epoch's val accuracy is the same model on the same split.
    assert summary["accuracy"] == pytest.approx(history[-1]["val_accuracy"], abs=1e-6)
    assert f"final metrics (the trained model on the val split, n={summary['n']})" in printed
