"""Fine-tune a zoo model on a folder of your own images, push its prototypes, and save it.

    python examples/finetune.py --images path/to/images --out runs/my-model
    python examples/finetune.py --smoke --out /tmp/finetune-smoke   # a tiny run on generated images

The folder holds one sub-folder per class (``images/benign/*.png``, ``images/malignant/*.png``),
optionally split into ``train/``, ``val/``, ``test/``. Everything ``protozoo train`` does (phases,
push, checkpoints, ``--resume``) happens here through :func:`protozoo.train.fit`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import protozoo
from protozoo.train import Recipe, fit
from protozoo.train.session import prepare_run


def write_smoke_images(root: Path, per_class: int = 12, size: int = 48) -> Path:
    """Two classes of generated images (bright disc vs bright bar) in the image-folder layout."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for label in ("disc", "bar"):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cy, cx = rng.integers(12, size - 12, size=2)
            shape = (
                (yy - cy) ** 2 + (xx - cx) ** 2 < 36 if label == "disc" else (abs(yy - cy) < 3) & (abs(xx - cx) < 10)
            )
            pixels = 0.2 * rng.random((size, size)) + 0.7 * shape
            Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / f"{label}_{i:03d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="image folder, one sub-folder per class")
    parser.add_argument("--model", default="protopnet_efficientnet_lite0", help="registered name or saved folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny run on generated images (seconds)")
    args = parser.parse_args()

    if args.smoke:
        args.images = write_smoke_images(Path(tempfile.mkdtemp(prefix="protozoo-smoke-")))
        args.image_size, args.epochs = 48, 2
        recipe = Recipe(epochs=2, warm_epochs=1, push_start=2, push_every=2, last_layer_epochs=1, batch_size=8)
        overrides = dict(prototypes_per_class=2, prototype_dim=16)
    else:
        if args.images is None:
            parser.error("--images is required (or --smoke)")
        recipe = Recipe(
            epochs=args.epochs,
            warm_epochs=min(3, args.epochs),
            push_start=args.epochs,
            push_every=args.epochs,
            last_layer_epochs=5,
            batch_size=16,
        )
        overrides = {}

    run = prepare_run(
        args.model,
        f"folder:{args.images}",
        image_size=args.image_size,
        pretrained_backbone=args.model.endswith("efficientnet_lite0"),
        **overrides,
    )
    result = fit(
        run.model,
        run.train,
        recipe=recipe,
        val_data=run.val,
        push_data=run.push,
        out_dir=args.out,
        resume=args.resume,
        progress=not args.smoke,
    )
    model = protozoo.load(str(args.out / "model"))
    first = model.provenance[0]
    print(f"classes: {list(model.pretrained_cfg.label_names)}")
    print(f"prototype 0 (class {first['class']}) is patch {first['feature_hw']} of {first['image_id']}")
    print(f"final train accuracy {result.history[-1]['accuracy']:.3f}; model saved in {args.out / 'model'}")


if __name__ == "__main__":
    main()
