"""The ``protozoo`` command line."""

import protozoo
from protozoo.cli import main


def test_list_with_pattern(capsys):
    assert main(["list", "protopnet_vgg*"]) == 0
    assert capsys.readouterr().out.split() == ["protopnet_vgg16", "protopnet_vgg19"]


def test_list_pretrained_empty_says_so(capsys):
    assert main(["list", "nothing*", "--pretrained"]) == 0
    assert "no trained models match" in capsys.readouterr().out


def test_info(capsys):
    assert main(["info", "protopnet_resnet34"]) == 0
    out = capsys.readouterr().out
    assert "resnet34 (timm)" in out and "2000 prototypes" in out and "parameters" in out
    assert "(3, 224, 224)" in out and "Chen et al." in out and "none yet (head untrained)" in out


def test_info_of_a_trained_model_shows_its_card(capsys):
    assert main(["info", "braix-protopnet++"]) == 0
    out = capsys.readouterr().out
    assert "braix_protopnet_pp_efficientnet_lite0.synth_mammo  (alias braix-protopnet++)" in out
    assert "(1, 128, 128)" in out and "15 prototypes" in out  # the trained architecture, not the defaults
    assert "weights/braix_protopnet_pp_efficientnet_lite0.synth_mammo" in out
    assert "## Test metrics" in out and "not a clinical model" in out


def test_info_unknown_name(capsys):
    assert main(["info", "protopnet_resnt18"]) == 2
    assert "did you mean 'protopnet_resnet18'" in capsys.readouterr().err


def test_train_starts_from_the_model_familys_recipe_and_flags_override_it(tmp_path):
    import argparse

    from protozoo.cli.train import add_parser, recipe_from_args
    from protozoo.train.tasks import task_for

    subparsers = argparse.ArgumentParser().add_subparsers()
    add_parser(subparsers, "train")
    parser = subparsers.choices["train"]
    args = parser.parse_args(
        [
            "--model",
            "m",
            "--data",
            "d",
            "--out",
            str(tmp_path),
            "--epochs",
            "2",
            "--warm-epochs",
            "1",
            "--global-epochs",
            "1",
        ]
    )
    braix = protozoo.create_model("braix_protopnet_pp_resnet18", num_classes=2, prototypes_per_class=1, prototype_dim=8)
    recipe = recipe_from_args(args, task_for(braix).recipe())
    assert (recipe.unique_source, recipe.epochs, recipe.global_epochs) == ("per_class", 2, 1)  # family default + flags
    lesion = protozoo.create_model("protopnet_lesion_resnet18", prototypes_per_class=1, prototype_dim=8)
    assert recipe_from_args(args, task_for(lesion).recipe()).loss.separation == -0.8
