"""Explain an AMD diagnosis by its lesions: which lesions a lesion-linked prototype model found, where,
and how much each added to the diagnosis.

    python examples/amd_lesions.py --out out/               # the zoo's trained lesion model
    python examples/amd_lesions.py --smoke --out /tmp/smoke  # untrained tiny model, seconds

Synthetic fundus photographs (``synthetic-fundus``, generated with the options the zoo model was
trained with); prints the lesions and the diagnosis' parts and writes ``lesions.png`` (the lesion
maps over the fundus and the per-lesion points).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.data.synthetic import AMD_CLASSES
from protozoo.explanation import explain
from protozoo.train.session import training_options
from protozoo.viz import render_lesion_maps

SIZE = 96
ZOO_MODEL = "protopnet_lesion_efficientnet_lite0.synth_fundus"


def lesion_model(classes: list[str]) -> Any:
    """A tiny lesion-linked model on timm's ``test_resnet`` for the synthetic-fundus lesions."""
    torch.manual_seed(0)
    model = protozoo.create_model(
        "protopnet_lesion_resnet18", backbone="test_resnet", feature_stage=-2, prototypes_per_class=2, prototype_dim=16
    )
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(3, SIZE, SIZE), label_names=tuple(classes))
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default=ZOO_MODEL, help=f"a trained lesion model (default {ZOO_MODEL})")
    parser.add_argument("--top-k", type=int, default=2, help="prototypes shown per lesion")
    parser.add_argument("--smoke", action="store_true", help="an untrained tiny model, in seconds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        print("--smoke: the model is UNTRAINED (random prototypes); its lesions and diagnosis mean nothing")
        model, options = lesion_model(AMD_CLASSES), {"image_size": SIZE}
    else:
        model = protozoo.load(args.model)
        options = training_options(model, "synthetic-fundus")  # the test split drawn like its training data
    options = options | {"num_samples": 16}
    test = load_dataset(
        "synthetic-fundus", "test", transform=build_transforms(resolve_data_config(model), train=False), **options
    )
    item = test[next(i for i in range(len(test)) if test[i]["label"] == 1)]  # an AMD eye
    truth = [name for name, present in zip(model.lesion_names, item["lesions"].tolist()) if present]
    print(f"image {item['id']}: {test.classes[item['label']]}, lesions drawn: {', '.join(truth) or 'none'}")
    explanation = explain(model, item["image"], top_k=args.top_k)
    print(f"diagnosis {explanation.predicted_name} with probability {explanation.probability:.2f}")
    print(f"{'lesion':>20} {'probability':>11} {'found':>5} {'weight':>7} {'points':>7}  top prototypes")
    for lesion in explanation.lesions:
        top = ", ".join(f"p{ev.index} ({ev.contribution:+.2f})" for ev in lesion.prototypes)
        print(
            f"{lesion.name:>20} {lesion.probability:>11.2f} {'yes' if lesion.found else 'no':>5} "
            f"{lesion.weight:>7.2f} {lesion.contribution:>+7.2f}  {top}"
        )
    print(
        f"{explanation.class_name} logit {explanation.logit:+.2f} = sum of lesion points "
        f"{float(explanation.contributions.sum()):+.2f} + bias {explanation.bias:+.2f}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    render_lesion_maps(explanation, path=args.out / "lesions.png")
    print(args.out / "lesions.png")


if __name__ == "__main__":
    main()
