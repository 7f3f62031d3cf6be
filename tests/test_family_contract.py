"""The family contract: a family declared in one file gets every tool, and every registered family keeps it.

The toy family below (its model and its :class:`~protozoo.family.Family`) lives only in this file;
training, push, the evaluators, explain, the gallery, the panel, ``protozoo info`` and
``protozoo explain`` serve it without any other module knowing it exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

import protozoo
from protozoo.cli import main
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.evaluate import classification, consistency, localization, prototype_stats, stability
from protozoo.family import Family, family_of, list_families, register_family
from protozoo.models.protopnet import ProtoPNet, ProtoPNetConfig
from protozoo.outputs import ProtoOutput
from protozoo.pretrained import PretrainedCfg
from protozoo.push import push_prototypes
from protozoo.train import Recipe, fit
from protozoo.viz import render_gallery

SIZE = 64
TINY = {"backbone": "test_resnet", "feature_stage": -2, "prototypes_per_class": 2, "prototype_dim": 16}


# ----------------------------------------------------------------------------- a toy family, here only


@dataclass
class ToyConfig(ProtoPNetConfig):
    arch: str = "toy_protonet"
    num_classes: int = 2
    logit_scale: float = 2.0


class ToyNet(ProtoPNet):
    """ProtoPNet whose logits are scaled: a family of its own, unknown to every protozoo module."""

    config_class = ToyConfig

    def forward(self, x):
        out = super().forward(x)
        return ProtoOutput(out.logits * self.config.logit_scale, out.similarities, out.min_distances, out.distance_maps)


def toy_loss(model, output, batch, weights, phase):
    loss = torch.nn.functional.cross_entropy(output.logits, batch["label"])
    return loss, {"cross_entropy": loss.item()}


TOY = Family(
    name="toy_protonet",
    model_class=ToyNet,
    title="toy ProtoPNet",
    loss=toy_loss,
    recipe={"unique_source": "per_class"},
    backbones={"tiny": ("test_resnet", PretrainedCfg())},
)
register_family(TOY, module=__name__)


def _items(spec: str, model, split: str = "train", n: int = 12):
    data = load_dataset(
        spec, split, image_size=SIZE, num_samples=n, **({"num_classes": 3} if spec == "synthetic-parts" else {})
    )
    data.transform = build_transforms(resolve_data_config(model), train=False)
    return data


def _sized(model, data):
    model.pretrained_cfg = model.pretrained_cfg.replace(
        input_size=(model.config.in_chans, SIZE, SIZE), label_names=tuple(data.classes)
    )
    return model


def test_a_family_in_one_file_gets_every_tool(tmp_path):
    model = protozoo.create_model(
        "toy_protonet_tiny", num_classes=3, **{k: v for k, v in TINY.items() if k != "backbone"}
    )
    assert family_of(model) is TOY and protozoo.list_models("toy_*") == ["toy_protonet_tiny"]
    data = _items(
        "synthetic-parts",
        _sized(model, load_dataset("synthetic-parts", "train", image_size=SIZE, num_samples=4, num_classes=3)),
    )
    # training reads the family's loss and recipe
    result = fit(
        model,
        data,
        recipe=Recipe(epochs=1, warm_epochs=0, push_start=1, push_every=1, last_layer_epochs=0, batch_size=6),
        progress=False,
        log=lambda _: None,
    )
    assert set(result.history[0]) >= {"cross_entropy", "accuracy"} and result.history[-1]["kind"] == "push"
    # push: every prototype is a training patch of its own class
    assert [row["label"] for row in model.provenance] == model.prototype_class.tolist()
    # every evaluator
    assert classification(model, data).accuracy is not None
    assert 0 <= consistency(model, data).score <= 100 and 0 <= stability(model, data).score <= 100
    stats = prototype_stats(model, data, k=2)
    assert stats.num_prototypes == model.num_prototypes and stats.purity.shape == (model.num_prototypes,)
    # explain: the evidence adds up to the toy's own (scaled) logit
    e = protozoo.explain(model, data[0]["image"], top_k=2)
    assert e.family == "toy_protonet"
    torch.testing.assert_close(torch.tensor(e.logit), e.contributions.sum() * 2.0, rtol=1e-4, atol=1e-4)
    # the gallery draws every prototype, one row per class
    fig = render_gallery(model, data)
    assert len([ax for ax in fig.axes if ax.images]) == model.num_prototypes
    # the CLI: info and explain on the saved model
    folder = model.save_pretrained(tmp_path / "toy")
    image = tmp_path / "bird.png"
    Image.fromarray((np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)).save(image)
    assert main(["info", "toy_protonet_tiny"]) == 0
    assert main(["explain", "--model", str(folder), str(image), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "bird_explanation.png").is_file() and (tmp_path / "out" / "report.html").is_file()


# ----------------------------------------------------------------------------- every registered family


FAMILIES = sorted(name for name, family in list_families().items() if family.backbones)  # the toy's too


def test_the_builtin_families_are_registered():
    builtin = {"braix_protopnet_pp", "protopnet", "protopnet_diverse", "protopnet_lesion", "protopnet_multiview"}
    assert builtin <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_family_contract(name, tmp_path, capsys):
    family = list_families()[name]
    n = 64 if family.prototype_kind == "lesion" else 24  # enough eyes to show every lesion type
    probe = load_dataset(
        family.example_data,
        "train",
        image_size=SIZE,
        num_samples=n,
        **({"num_classes": 3} if family.example_data == "synthetic-parts" else {}),
    )
    in_chans = next(iter(family.image_views(probe[0]).values()))["image"].shape[0]
    model = protozoo.create_model(
        f"{name}_{next(iter(family.backbones))}",
        in_chans=in_chans,
        **TINY,
        **family.resolved("dataset_arguments")(probe),
    ).eval()
    data = _items(family.example_data, _sized(model, probe), n=n)

    # per-class counts: what `protozoo info` and reports print comes from prototype_class
    names = family.class_names(model)
    counts = torch.bincount(model.prototype_class, minlength=len(names)).tolist()
    assert set(counts) == {TINY["prototypes_per_class"]} and len(counts) == len(names)
    assert family.describe_prototypes(model).startswith(
        f"{model.num_prototypes} prototypes ({TINY['prototypes_per_class']} per {family.prototype_kind} x {len(names)} "
    )

    loader = torch.utils.data.DataLoader(data, batch_size=6, collate_fn=protozoo.data.collate.collate_items)
    push_prototypes(model, loader, unique_source="none")
    # gallery tiles = prototypes, found in the data the push ran over
    fig = render_gallery(model, data)
    assert len([ax for ax in fig.axes if ax.images]) == model.num_prototypes
    assert not any("not found" in ax.get_title() for ax in fig.axes)
    stats = prototype_stats(model, data, k=2)
    assert stats.num_prototypes == model.num_prototypes

    # the explain CLI, with one image file per input the family reads
    folder = model.save_pretrained(tmp_path / "model")
    files = []
    for _i, view in enumerate(family.input_names):
        array = next(iter(family.image_views(probe[0]).values()))["image"]
        path = tmp_path / f"{view}.png"
        pixels = (array.clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy() * 255).astype(np.uint8)
        Image.fromarray(pixels).save(path)
        files.append(str(path))
    assert main(["explain", "--model", str(folder), *files, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file() and list((tmp_path / "out").glob("*_explanation.png"))
    if "mask" in next(iter(family.image_views(data[0]).values())):
        assert 0 <= localization(model, data).pointing_game <= 1
