"""``protozoo explain --model NAME|DIR IMAGE... --out DIR``: one explanation panel per image + report.html."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from protozoo.data import build_transforms, load_dataset, read_dicom, resolve_data_config
from protozoo.explain import explain
from protozoo.hub import load
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
        help="dataset the model was pushed on (load_dataset spec, e.g. synthetic-mammo), to show prototype sources",
    )
    parser.add_argument("--sources-split", default="train", help="split of --sources (default train)")


def read_image(path: str | Path) -> torch.Tensor:
    """A (C, H, W) float tensor in [0, 1]: DICOM through :func:`read_dicom`, else through PIL.

    PIL grayscale (8- or 16-bit) gives one channel, anything else RGB.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} not found")
    if path.suffix.lower() == ".dcm":
        return read_dicom(path)
    with Image.open(path) as image:
        if image.mode in ("I", "I;16", "I;16B", "I;16L"):
            pixels = np.asarray(image, dtype=np.float32)
            return torch.from_numpy(pixels / max(float(pixels.max()), 1.0))[None]  # (1, H, W)
        image = image if image.mode in ("L", "RGB") else image.convert("RGB")
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(pixels)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)  # (C, H, W)


def run(args: argparse.Namespace) -> int:
    model = load(args.model)
    transform = build_transforms(resolve_data_config(model), train=False)
    sources = None
    if args.sources:
        sources = load_dataset(args.sources, args.sources_split, transform=transform)
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
