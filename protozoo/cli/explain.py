"""``protozoo explain --model NAME|DIR IMAGE... --out DIR``: one explanation panel per image + report.html.

A model whose family reads several images per item (a multi-view CC/MLO model) takes them in
groups in the family's input order: ``protozoo explain --model mv LCC.dcm LMLO.dcm RCC.dcm RMLO.dcm``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import Tensor

from protozoo.builder import load
from protozoo.cli._args import add_data_option, parse_key_values
from protozoo.data import build_transforms, load_dataset, read_image, resolve_data_config
from protozoo.explanation import explain
from protozoo.family import family_of
from protozoo.ood import OOD_KEY, calibrate
from protozoo.train.session import training_options


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="explain predictions: panels of the prototypes behind them")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG images or DICOM (.dcm) files")
    parser.add_argument("--model", required=True, help="model name, alias, saved folder or hf-hub:org/repo")
    parser.add_argument("--out", required=True, type=Path, help="folder for the panels and report.html")
    parser.add_argument("--top-k", type=int, default=5, help="prototypes per panel (default 5)")
    parser.add_argument("--class-idx", type=int, default=None, help="explain this class instead of the predicted one")
    parser.add_argument(
        "--sources",
        default=None,
        metavar="SPEC",
        help="dataset the model was pushed on (load_dataset spec, e.g. synthetic-mammo), to show prototype sources; "
        "the options the model was trained with (recorded in its config) are applied to the same spec",
    )
    parser.add_argument("--sources-split", default="train", help="split of --sources (default train)")
    add_data_option(parser, "; options of --sources, on top of those the model was trained with")


def run(args: argparse.Namespace) -> int:
    from protozoo.viz.gallery import render_gallery  # matplotlib (the viz extra) only when pictures are drawn
    from protozoo.viz.report import render_report

    model = load(args.model)
    transform = build_transforms(resolve_data_config(model), train=False)
    sources = None
    if args.sources:
        options = training_options(model, args.sources) | parse_key_values(args.data_option)
        sources = load_dataset(args.sources, args.sources_split, transform=transform, **options)
    if not model.pretrained_cfg.extra.get(OOD_KEY):  # the OOD note needs the training data's statistics
        _measure_ood(model, sources, args, transform)
    family = family_of(model)
    names = family.input_names
    if len(args.images) % len(names):
        raise SystemExit(
            f"protozoo explain: a {family.title or family.name} model reads {len(names)} images per item "
            f"({', '.join(names)}, in that order); got {len(args.images)} files"
        )
    panel_of = family.resolved("panel")
    args.out.mkdir(parents=True, exist_ok=True)
    panels, predicted, stems = [], set(), set()
    for start in range(0, len(args.images), len(names)):
        files = args.images[start : start + len(names)]
        inputs = [_fitted(path, model, transform) for path in files]  # (C, H, W) each
        explanation = explain(
            model, inputs[0] if len(inputs) == 1 else tuple(inputs), args.top_k, class_idx=args.class_idx
        )
        stem = "+".join(Path(path).stem for path in files)
        stem = stem if stem not in stems else f"{stem}_{start}"
        stems.add(stem)
        panel = args.out / f"{stem}_explanation.png"
        panel_of(explanation, sources, path=panel)
        explanation.extra["image_id"] = " + ".join(str(path) for path in files)
        panels.append((explanation, panel))
        predicted.add(explanation.predicted)
        flag = "  OUT OF DISTRIBUTION" if explanation.ood is not None and explanation.ood.flagged else ""
        print(f"{panel}  {explanation.predicted_name} ({explanation.probability:.2f}){flag}")
    gallery = None
    if model.provenance is not None:
        gallery = args.out / "gallery.png"
        # The predicted classes' rows (a large model's full gallery is too big); all rows when the
        # prototype classes are not the output classes (a lesion head's lesions).
        rows = sorted(predicted) if family.prototype_kind == "class" else None
        render_gallery(model, sources, path=gallery, classes=rows)
        print(gallery)
    report = render_report(args.out / "report.html", model=model, metrics={}, gallery_png=gallery, explanations=panels)
    print(report)
    return 0


def _measure_ood(model, sources, args: argparse.Namespace, transform) -> None:
    """Record the OOD statistics of a model that has none: on --sources, else on its recorded
    training data where that is a built-in generated set (regenerated as it was trained), else none
    (the notes then say that nothing can be said)."""
    recorded = model.pretrained_cfg.extra.get("train_data") or {}
    spec = str(recorded.get("spec") or "")
    if sources is not None:
        what = f"--sources {args.sources} ({args.sources_split} split)"
    elif spec.startswith("synthetic"):
        sources, what = (
            load_dataset(spec, "train", transform=transform, **training_options(model, spec)),
            f"its recorded training data ({spec}, regenerated)",
        )
    else:
        return
    stats = calibrate(model, sources, description=what)
    print(f"out-of-distribution statistics measured now on {stats['images']} items of {what}")


def _fitted(path: str, model, transform):
    """The (C, H, W) image of the file under the model's eval geometry; says so when that geometry
    (the one the model was trained with) cuts part of the image away (a centre crop of a mammogram)."""
    image = _read(path, model)  # (C, H, W)
    rows, cols = transform.visible_fraction(*image.shape[-2:])
    if rows < 1 or cols < 1:
        print(
            f"note: {path} is {image.shape[-1]}x{image.shape[-2]} px; this model was trained with "
            f"crop_mode={transform.crop_mode!r} crop_pct={transform.crop_pct}, so {rows:.0%} of its rows and "
            f"{cols:.0%} of its columns reach the model (a model trained on mammograms or fundus photographs "
            "with protozoo train letterboxes them whole)"
        )
    return transform({"image": image})["image"]


def _read(path: str, model) -> Tensor:
    """The image file, refused when it is smaller than one feature cell: resized up, it would be
    explained as if it had content (a 1x1 image read as probability 0.46)."""
    image = read_image(path)  # (C, H, W)
    if min(image.shape[-2:]) < model.min_input_size:
        raise ValueError(
            f"image {path} is {image.shape[-1]}x{image.shape[-2]} px, smaller than one feature cell of the "
            f"model ({model.min_input_size} px): there is nothing in it to explain"
        )
    return image
