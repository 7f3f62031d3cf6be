"""Transfer learning in the benchmark: freezing the first feature stages keeps them at their init."""

from __future__ import annotations

import torch

import protozoo
from protozoo.backbones import Backbone
from protozoo.benchmark.classifier import PlainClassifier, train_classifier
from protozoo.benchmark.transfer import freeze_protopnet_stages, frozen_stage_parameters
from protozoo.data import load_dataset
from protozoo.train.loop import fit
from protozoo.train.schedule import Recipe


def test_frozen_stages_are_the_stem_and_the_first_stages():
    backbone = Backbone("resnet18")
    names = {id(p): n for n, p in backbone.body.named_parameters()}
    frozen = [names[id(p)] for p in frozen_stage_parameters(backbone, 2)]  # act1 (the stem), layer1
    assert frozen[0] == "conv1.weight" and all(n.split(".")[0] in ("conv1", "bn1", "layer1") for n in frozen)
    assert any(n.startswith("layer1.") for n in frozen) and not any(n.startswith("layer2.") for n in frozen)
    lite = Backbone("tf_efficientnet_lite0")  # stages blocks.0, blocks.1, blocks.2, blocks.4, blocks.6
    lite_frozen = {id(q) for q in frozen_stage_parameters(lite, 3)}
    lite_names = [n for n, p in lite.body.named_parameters() if id(p) in lite_frozen]
    assert lite_names[0] == "conv_stem.weight" and lite_names[-1].startswith("blocks.2.")
    assert len(lite_names) == next(
        i for i, (n, _) in enumerate(lite.body.named_parameters()) if n.startswith("blocks.3.")
    )
    assert frozen_stage_parameters(backbone, 0) == []
    assert len(frozen_stage_parameters(backbone, 99)) == len(list(backbone.body.parameters()))


def test_fit_and_the_classifier_leave_frozen_stages_untouched():
    data = load_dataset("synthetic-fundus", "train", image_size=32, num_samples=8)
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, pretrained_backbone=False)
    assert freeze_protopnet_stages(model, 2) > 0
    frozen = frozen_stage_parameters(model.backbone, 2)
    before = [p.detach().clone() for p in frozen]
    trained_before = model.backbone.body.layer4[0].conv1.weight.detach().clone()
    assert not {id(p) for p in frozen} & {id(p) for p in model.parameter_groups()["backbone"]}
    fit(
        model,
        data,
        recipe=Recipe(epochs=2, warm_epochs=0, push_start=2, last_layer_epochs=0, batch_size=4),
        progress=False,
        log=lambda _: None,
    )
    assert all(torch.equal(a, p) for a, p in zip(before, frozen))
    assert not torch.equal(trained_before, model.backbone.body.layer4[0].conv1.weight)

    classifier = PlainClassifier(Backbone("resnet18"), 2)
    frozen = frozen_stage_parameters(classifier.backbone, 2)
    before = [p.detach().clone() for p in frozen]
    head = classifier.classifier.weight.detach().clone()
    train_classifier(classifier, data, epochs=1, batch_size=4, seed=0, frozen=frozen, progress=False)
    assert all(torch.equal(a, p) for a, p in zip(before, frozen))
    assert not torch.equal(head, classifier.classifier.weight)
