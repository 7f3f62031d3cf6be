"""Show every prototype of a model as the training patch it was pushed from, and write a report.

    python examples/visualize_prototypes.py --model DIR --out out/   # the data it was trained on
    python examples/visualize_prototypes.py --model DIR --data synthetic-mammo --out out/
    python examples/visualize_prototypes.py --smoke --out /tmp/smoke   # tiny model, seconds

The source images are the model's own training images: ``--data`` defaults to the dataset its
config records (``pretrained_cfg.extra["train_data"]``), read with the options it was trained with
(a synthetic image is a function of its id *and* the generator's options) and its eval geometry.
A pushed model shown over another dataset would draw its provenance boxes over other images, so
that is refused. A model that has not been pushed yet is pushed on ``--data`` first (its
prototypes replaced by their nearest training patches). Writes ``gallery.png`` (one row per
class) and ``report.html``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import protozoo
from protozoo.data import build_transforms, label_map, load_dataset, resolve_data_config
from protozoo.data.collate import collate_items
from protozoo.explanation import explain
from protozoo.family import family_of
from protozoo.push import push_prototypes
from protozoo.train.session import training_options
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
        "protopnet_resnet18",
        backbone="test_resnet",
        num_classes=data.num_classes,
        prototypes_per_class=2,
        prototype_dim=16,
        in_chans=1,
        feature_stage=-2,
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


def training_data(model: Any, spec: str | None, split: str, *, name: str) -> Any:
    """The model's source images: ``spec`` (default: its recorded training data) with the recorded
    options and the model's eval geometry; ``spec.spec`` says which dataset it is.

    Raises:
        SystemExit: When a pushed model's recorded training data is another dataset (or split):
            its provenance rows name images of that one.
    """
    recorded = model.pretrained_cfg.extra.get("train_data") or {}
    spec = spec or recorded.get("spec") or "synthetic-mammo"
    if model.provenance is not None and recorded.get("spec") and (spec != recorded["spec"] or split != "train"):
        raise SystemExit(
            f"{name} was pushed on {recorded['spec']!r} (train split): its prototypes' sources are "
            f"images of that dataset, not of {spec!r} ({split}); drop --data / --split, or pass "
            f"--data {recorded['spec']}"
        )
    options = training_options(model, spec)
    data = load_dataset(spec, split, transform=build_transforms(resolve_data_config(model), train=False), **options)
    data.spec = spec
    if model.provenance is not None and not recorded:
        print(
            f"warning: {name} does not record its training data; the sources shown are those of {spec!r} read "
            "with default options, which may not be the images it was pushed on"
        )
    return data


def model_input(model: Any, item: dict[str, Any]) -> Any:
    """What ``explain`` takes for one item: its image, or its views' images in the family's order (CC, MLO)."""
    family = family_of(model)
    if len(family.input_names) == 1:
        return item["image"]
    views = family.image_views(item)
    return tuple(views[name]["image"] for name in family.input_names)


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model name or saved folder")
    parser.add_argument(
        "--data",
        help="load_dataset spec of the source images (default: the model's recorded "
        "training data, else synthetic-mammo)",
    )
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--zoom", action="store_true", help="crops around the prototypes instead of whole images")
    parser.add_argument("--smoke", action="store_true", help="a tiny model on synthetic data, in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        model, data = smoke_model()
    elif args.model:
        model = protozoo.load(args.model)
        data = training_data(model, args.data, args.split, name=args.model)
        if model.provenance is None:
            print(f"{args.model} has no push provenance: pushing it on {data.spec} ({args.split})")
            push_prototypes(model, DataLoader(data, batch_size=32, collate_fn=collate_items), progress=True)
    else:
        parser.error("give --model (or --smoke)")
    args.out.mkdir(parents=True, exist_ok=True)
    gallery = render_gallery(model, data, path=args.out / "gallery.png", zoom=args.zoom)
    names = model.pretrained_cfg.label_names
    to_model = label_map(data.classes, names, dataset=getattr(data, "spec", "the data")) if names else None
    samples = [
        explain(
            model, model_input(model, data[i]), top_k=3, label=None if to_model is None else to_model[data[i]["label"]]
        )
        for i in range(2)
    ]
    report = render_report(
        args.out / "report.html",
        model=model,
        metrics={"prototypes": model.num_prototypes},
        gallery_png=gallery,
        explanations=samples,
        sources=data,
    )
    print(args.out / "gallery.png")
    print(report)


if __name__ == "__main__":
    main()
