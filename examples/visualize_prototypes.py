"""Show every prototype of a model as the training patch it was pushed from, and write a report.

    python examples/visualize_prototypes.py --model DIR --data synthetic-mammo --out out/
    python examples/visualize_prototypes.py --smoke --out /tmp/smoke   # tiny model, seconds

A model that has not been pushed yet is pushed on ``--data`` first (its prototypes replaced by
their nearest training patches). Writes ``gallery.png`` (one row per class) and ``report.html``.
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
from protozoo.explanation import explain
from protozoo.push import push_prototypes
from protozoo.viz import render_gallery, render_report


def smoke_model(size: int = 96, steps: int = 8) -> tuple[Any, Any]:
    """A tiny grayscale ProtoPNet, its head briefly trained, pushed on synthetic mammograms, and its data.

    Returns:
        The pushed model (eval mode) and the dataset it was pushed on (eval transform).
    """
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a model this small only loses time to thread hand-offs on a busy CPU
    data = load_dataset("synthetic-mammo", "train", image_size=size, num_samples=36)
    model = protozoo.create_model(
        "protopnet_resnet18", backbone="test_resnet", num_classes=data.num_classes, prototypes_per_class=2,
        prototype_dim=16, in_chans=1, feature_stage=-2,
    )
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(1, size, size), label_names=tuple(data.classes))
    data.transform = build_transforms(resolve_data_config(model), train=False)
    loader = DataLoader(data, batch_size=12, shuffle=True, collate_fn=collate_items)
    model.backbone.requires_grad_(False)  # ProtoPNet's warm-up stage: the head learns, the backbone stays
    head = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(head, lr=3e-3)
    model.train()
    for _, batch in zip(range(steps), _cycle(loader)):
        loss = F.cross_entropy(model(batch["image"]).logits, batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    push_prototypes(model, DataLoader(data, batch_size=18, collate_fn=collate_items))
    return model.eval(), data


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model name or saved folder")
    parser.add_argument("--data", default="synthetic-mammo", help="load_dataset spec the model is pushed on")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--zoom", action="store_true", help="crops around the prototypes instead of whole images")
    parser.add_argument("--smoke", action="store_true", help="a tiny model on synthetic data, in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        model, data = smoke_model()
    elif args.model:
        model = protozoo.load(args.model)
        data = load_dataset(args.data, args.split, transform=build_transforms(resolve_data_config(model), train=False))
        if model.provenance is None:
            print(f"{args.model} has no push provenance: pushing it on {args.data} ({args.split})")
            push_prototypes(model, DataLoader(data, batch_size=32, collate_fn=collate_items), progress=True)
    else:
        parser.error("give --model (or --smoke)")
    args.out.mkdir(parents=True, exist_ok=True)
    gallery = render_gallery(model, data, path=args.out / "gallery.png", zoom=args.zoom)
    samples = [explain(model, data[i]["image"], top_k=3) for i in range(2)]
    report = render_report(
        args.out / "report.html", model=model, metrics={"prototypes": model.num_prototypes},
        gallery_png=gallery, explanations=samples, sources=data,
    )
    print(args.out / "gallery.png")
    print(report)


if __name__ == "__main__":
    main()
