"""protozoo.intended_use: where the banner's line comes from, first found wins."""

from __future__ import annotations

import protozoo
from protozoo.intended_use import _card_line, intended_use


def _model(**extra):
    model = protozoo.create_model(
        "protopnet_resnet18", backbone="test_resnet", num_classes=2, pretrained_backbone=False
    )
    model.pretrained_cfg = model.pretrained_cfg.replace(extra=extra)
    return model


def test_the_card_section_then_its_not_clinical_sentence():
    section = "---\nlicense: mit\n---\n# m\n\n## Intended use\n\nResearch on **explanations** only;\nnot for clinical use.\n\n## Data\n"
    assert _card_line(section) == "Research on explanations only; not for clinical use."
    sentence = (
        "# m\n\nProtoPNet on birds. A demonstration, **not a clinical model**: nothing is patient data.\n\n| a | b |\n"
    )
    assert _card_line(sentence) == "A demonstration, not a clinical model: nothing is patient data."
    assert _card_line("# m\n\nA bird classifier.\n") is None


def test_recorded_line_then_synthetic_training_data_then_nothing():
    assert (
        intended_use(_model(intended_use="Research only.", train_data={"spec": "synthetic-mammo"}))
        == "Research only. Trained on: synthetic-mammo."
    )
    assert (
        intended_use(_model(train_data={"spec": "synthetic-fundus"}))
        == "Trained on synthetic data (synthetic-fundus) only; not for clinical use."
    )
    assert (
        intended_use(_model(train_data={"spec": "folder:/data/eyes"})) is None
    )  # a model on own data: no banner made up
    assert intended_use(_model()) is None


def test_a_zoo_model_reads_its_card():
    line = intended_use(protozoo.load("braix-protopnet++"))
    assert "clinical" in line.lower() and line.endswith("Trained on: synthetic-mammo.")
