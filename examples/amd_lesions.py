"""Explain an AMD diagnosis by its lesions: which lesions a lesion-linked prototype model found, where,
and how much each added to the diagnosis.

    python examples/amd_lesions.py --out out/               # a small model, briefly trained (minutes)
    python examples/amd_lesions.py --smoke --out /tmp/smoke  # untrained tiny model, seconds

Synthetic fundus photographs (``synthetic-fundus``); prints the lesions and the diagnosis' parts
and writes ``lesions.png`` (the lesion maps over the fundus and the per-lesion points).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.data.collate import collate_items
from protozoo.explain import explain
from protozoo.viz import render_lesion_maps

SIZE = 96


def lesion_model(classes: list[str]) -> Any:
    """A tiny lesion-linked model on timm's ``test_resnet`` for the synthetic-fundus lesions."""
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_lesion_resnet18", backbone="test_resnet", feature_stage=-2,
                                  prototypes_per_class=2, prototype_dim=16)
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(3, SIZE, SIZE), label_names=tuple(classes))
    return model


def train_briefly(model: Any, data: Any, steps: int) -> None:
    """Lesion BCE + diagnosis cross-entropy on the head (the backbone stays as built), ``steps`` Adam steps."""
    loader = DataLoader(data, batch_size=16, shuffle=True, collate_fn=collate_items)
    model.backbone.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    step = 0
    while step < steps:
        for batch in loader:
            out = model(batch["image"])
            loss = F.binary_cross_entropy_with_logits(out.lesion_logits, batch["lesions"]) + F.cross_entropy(out.logits, batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 20 == 0 or step == steps:
                print(f"step {step}/{steps} loss {loss.item():.3f}")
            if step == steps:
                break
    model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200, help="training steps (without --smoke)")
    parser.add_argument("--top-k", type=int, default=2, help="prototypes shown per lesion")
    parser.add_argument("--smoke", action="store_true", help="an untrained tiny model, in seconds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    test = load_dataset("synthetic-fundus", "test", image_size=SIZE, num_samples=16)
    model = lesion_model(test.classes)
    transform = build_transforms(resolve_data_config(model), train=False)
    test.transform = transform
    if args.smoke:
        print("--smoke: the model is UNTRAINED (random prototypes); its lesions and diagnosis mean nothing")
    else:
        train = load_dataset("synthetic-fundus", "train", image_size=SIZE, num_samples=256, transform=transform)
        train_briefly(model, train, args.steps)
    item = test[next(i for i in range(len(test)) if test[i]["label"] == 1)]  # an AMD eye
    truth = [name for name, present in zip(model.lesion_names, item["lesions"].tolist()) if present]
    print(f"image {item['id']}: {test.classes[item['label']]}, lesions drawn: {', '.join(truth) or 'none'}")
    explanation = explain(model, item["image"], top_k=args.top_k)
    print(f"diagnosis {explanation.predicted_name} with probability {explanation.probability:.2f}")
    print(f"{'lesion':>20} {'probability':>11} {'found':>5} {'weight':>7} {'points':>7}  top prototypes")
    for lesion in explanation.lesions:
        top = ", ".join(f"p{ev.index} ({ev.contribution:+.2f})" for ev in lesion.prototypes)
        print(f"{lesion.name:>20} {lesion.probability:>11.2f} {'yes' if lesion.found else 'no':>5} "
              f"{lesion.weight:>7.2f} {lesion.contribution:>+7.2f}  {top}")
    print(f"{explanation.class_name} logit {explanation.logit:+.2f} = sum of lesion points "
          f"{float(explanation.contributions.sum()):+.2f} + bias {explanation.bias:+.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    render_lesion_maps(explanation, path=args.out / "lesions.png")
    print(args.out / "lesions.png")


if __name__ == "__main__":
    main()
