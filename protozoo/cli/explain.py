"""``protozoo explain --model NAME|DIR IMAGE... --out DIR``: one explanation panel per image + report.html."""

from __future__ import annotations

import argparse
from pathlib import Path

from protozoo.data import build_transforms, load_dataset, read_image, resolve_data_config
from protozoo.explain import explain
from protozoo.hub import load
from protozoo.train.session import training_options
from protozoo.viz.gallery import render_gallery
from protozoo.viz.panel import render_panel
from protozoo.viz.report import render_report


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="explain predictions: panels of the prototypes behind them")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG images or DICOM (.dcm) files")
    parser.add_argument("--model", required=True, help="model name, alias, saved folder or hf-hub:org/repo")
    parser.add_argument("--out", required=True, type=Path, help="folder for the panels and report.html")
    parser.add_argument("--top-k", type=int, default=5, help="prototypes per panel (default 5)")
    parser.add_argument("--class-idx", type=int, default=None, help="explain this class instead of the predicted one")
    parser.add_argument(
        "--sources", default=None, metavar="SPEC",
        help="dataset the model was pushed on (load_dataset spec, e.g. synthetic-mammo), to show prototype sources; "
        "the options the model was trained with (recorded in its config) are applied to the same spec",
    )
    parser.add_argument("--sources-split", default="train", help="split of --sources (default train)")


def run(args: argparse.Namespace) -> int:
    model = load(args.model)
    transform = build_transforms(resolve_data_config(model), train=False)
    sources = None
    if args.sources:
        sources = load_dataset(args.sources, args.sources_split, transform=transform, **training_options(model, args.sources))
    args.out.mkdir(parents=True, exist_ok=True)
    panels, predicted = [], set()
    for i, image_path in enumerate(args.images):
        image = transform({"image": read_image(image_path)})["image"]  # (C, H, W)
        explanation = explain(model, image, args.top_k, class_idx=args.class_idx)
        stem = Path(image_path).stem
        panel = args.out / f"{stem if all(Path(p).stem != stem for p in args.images[:i]) else f'{stem}_{i}'}_explanation.png"
        render_panel(explanation, sources, path=panel)
        panels.append(panel)
        predicted.add(explanation.predicted)
        print(f"{panel}  {explanation.predicted_name} ({explanation.probability:.2f})")
    gallery = None
    if model.provenance is not None:  # the predicted classes' rows: a large model's full gallery is too big
        gallery = args.out / "gallery.png"
        render_gallery(model, sources, path=gallery, classes=sorted(predicted))
        print(gallery)
    report = render_report(args.out / "report.html", model=model, metrics={}, gallery_png=gallery, explanations=panels)
    print(report)
    return 0
