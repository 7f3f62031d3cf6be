"""Explain one prediction: which prototypes the model saw in the image, where, and how much they counted.

    python examples/explain_image.py --model DIR IMAGE.png --out out/ [--sources synthetic-mammo]
    python examples/explain_image.py --smoke --out /tmp/smoke   # tiny model, seconds

Prints the evidence table and writes ``explanation.png`` (the ProtoPNet paper's panel).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import protozoo
from protozoo.data import build_transforms, load_dataset, read_image, resolve_data_config
from protozoo.explanation import explain
from protozoo.viz import render_panel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", help="PNG/JPEG or DICOM file")
    parser.add_argument("--model", help="model name or saved folder")
    parser.add_argument("--sources", help="load_dataset spec the model was pushed on (to show prototype sources)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a tiny model on synthetic data, in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        from visualize_prototypes import smoke_model  # the example beside this one

        model, sources = smoke_model()
        test = load_dataset("synthetic-mammo", "test", image_size=96, num_samples=8, transform=sources.transform)
        image = test[next(i for i in range(len(test)) if test[i]["label"] == 2)]["image"]  # a malignant case
    elif args.model and args.image:
        model = protozoo.load(args.model)
        transform = build_transforms(resolve_data_config(model), train=False)
        sources = load_dataset(args.sources, "train", transform=transform) if args.sources else None
        image = transform({"image": read_image(args.image)})["image"]  # (C, H, W), normalised
    else:
        parser.error("give --model and IMAGE (or --smoke)")

    explanation = explain(model, image, top_k=args.top_k)
    print(f"predicted {explanation.predicted_name} with probability {explanation.probability:.2f}")
    print(f"{'prototype':>9} {'class':>12} {'similarity':>10} {'weight':>7} {'points':>7}  source")
    for ev in explanation.prototypes:
        source = ev.source["image_id"] if ev.source else "-"
        print(
            f"{ev.index:>9} {ev.class_name:>12} {ev.similarity:>10.3f} {ev.weight:>+7.2f} {ev.contribution:>+7.2f}  {source}"
        )
    print(f"{'':>9} {'logit':>12} {'':>10} {'':>7} {explanation.logit:>+7.2f}  (sum over all prototypes)")
    args.out.mkdir(parents=True, exist_ok=True)
    render_panel(explanation, sources, path=args.out / "explanation.png")
    print(args.out / "explanation.png")


if __name__ == "__main__":
    main()
