"""What consistency + stability cost: against plain inference, and against a loop with the
structure of the reference code (Huang et al. 2023: loop over classes, prototypes and images,
upsample each map on its own, test the parts one by one; one pass for consistency and two more
for stability).

protopnet_resnet18, 10 classes x 10 prototypes, 64 synthetic-parts test images, CPU.
Goals: ours <= 2.5x plain inference; the reference loop >= 10x slower than ours. Also printed:
the scoring alone (maps given), where the loop structure is all that differs.

    python benchmarks/bench_evaluate.py [--size 224] [--images 64] [--batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.data.collate import collate_items
from protozoo.evaluate import consistency_and_stability, gaussian_noise
from protozoo.evaluate._parts import box_half_size, parts_inside


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def batches(items, size):
    return [collate_items(items[i : i + size]) for i in range(0, len(items), size)]


@torch.inference_mode()
def plain_inference(model, data):
    for batch in data:
        model(batch["image"])


@torch.inference_mode()
def own_class_maps(model, data, perturb=None):
    """(N, prototypes_per_class, h, w) numpy maps of each image's own-class prototypes."""
    per_class = model.config.prototypes_per_class
    maps = []
    for batch in data:
        x = batch["image"] if perturb is None else perturb(batch["image"])
        sim = model.similarity_maps(x)  # (B, P, h, w)
        index = batch["label"][:, None] * per_class + torch.arange(per_class)  # (B, per_class)
        maps.append(sim[torch.arange(len(x))[:, None], index].numpy())
    return np.concatenate(maps)


def loop_parts_inside(maps, labels, parts, visible, size, half, num_classes):
    """The reference structure: per class, per prototype, per image, per part; (N, ppc, K) array."""
    out = np.zeros((*maps.shape[:2], parts.shape[1]))
    for c in range(num_classes):
        for j in range(maps.shape[1]):
            for i in np.nonzero(labels == c)[0]:
                one = torch.from_numpy(maps[i, j])[None, None]  # (1, 1, h, w)
                up = F.interpolate(one, size=(size, size), mode="bicubic", align_corners=False)[0, 0].numpy()
                y, x = np.argwhere(up == up.max())[0]
                box = (max(-0.5, y - half), min(size - 0.5, y + half), max(-0.5, x - half), min(size - 0.5, x + half))
                for k in range(parts.shape[1]):
                    if visible[i, k]:
                        px, py = parts[i, k]
                        out[i, j, k] = box[0] <= py <= box[1] and box[2] <= px <= box[3]
    return out


def reference(model, data, size, half, num_classes, seed):
    labels = torch.cat([b["label"] for b in data]).numpy()
    parts = torch.cat([b["parts"] for b in data]).numpy()
    visible = torch.cat([b["parts_visible"] for b in data]).numpy()
    consistency_pass = loop_parts_inside(own_class_maps(model, data), labels, parts, visible, size, half, num_classes)
    clean = loop_parts_inside(own_class_maps(model, data), labels, parts, visible, size, half, num_classes)
    noisy_maps = own_class_maps(model, data, gaussian_noise(seed=seed))
    noisy = loop_parts_inside(noisy_maps, labels, parts, visible, size, half, num_classes)
    return consistency_pass, (clean == noisy).all(axis=2).mean() * 100


def scoring_only(maps, data, size, half):
    """Our vectorised scoring of the same own-class maps (what replaces loop_parts_inside)."""
    per_class = maps.shape[1]
    parts = torch.cat([b["parts"] for b in data]).float().repeat_interleave(per_class, 0)  # (N * ppc, K, 2)
    visible = torch.cat([b["parts_visible"] for b in data]).repeat_interleave(per_class, 0)  # (N * ppc, K)
    return parts_inside(torch.from_numpy(maps).flatten(0, 1), parts, visible, (size, size), half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_resnet18", num_classes=10, prototypes_per_class=10).eval()
    transform = build_transforms(resolve_data_config(model, input_size=(3, args.size, args.size)), train=False)
    dataset = load_dataset(
        "synthetic-parts", "test", image_size=args.size, num_samples=args.images, num_classes=10, transform=transform
    )
    items = [dataset[i] for i in range(len(dataset))]
    data = batches(items, args.batch)
    half = box_half_size(args.size)
    plain_inference(model, data[:1])  # warm-up

    t_plain, _ = timed(lambda: plain_inference(model, data))
    t_ours, (c, s) = timed(lambda: consistency_and_stability(model, items, batch_size=args.batch, seed=0))
    t_ref, (_, ref_stability) = timed(lambda: reference(model, data, args.size, half, 10, 0))
    maps = own_class_maps(model, data)
    labels, parts, visible = (torch.cat([b[k] for b in data]).numpy() for k in ("label", "parts", "parts_visible"))
    t_score, _ = timed(lambda: scoring_only(maps, data, args.size, half))
    t_loop, _ = timed(lambda: loop_parts_inside(maps, labels, parts, visible, args.size, half, 10))

    print(f"protopnet_resnet18, 10 classes x 10 prototypes, {args.images} images at {args.size} px, "
          f"batch {args.batch}, {args.threads} threads")  # fmt: skip
    print(f"plain inference            {t_plain:8.2f} s")
    print(f"consistency + stability    {t_ours:8.2f} s   (consistency {c.score:.1f}, stability {s.score:.1f})")
    print(f"reference-structure loop   {t_ref:8.2f} s   (stability {ref_stability:.1f})")
    print(f"ours / plain inference     {t_ours / t_plain:8.2f} x   (goal <= 2.5)")
    print(f"reference / ours           {t_ref / t_ours:8.2f} x   (goal >= 10)")
    print(f"scoring one pass of maps: vectorised {t_score * 1e3:.1f} ms, loop {t_loop * 1e3:.1f} ms, "
          f"{t_loop / t_score:.1f} x")  # fmt: skip


if __name__ == "__main__":
    main()
