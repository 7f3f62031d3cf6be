"""Data must not be the bottleneck: synthetic samples vs the training step that consumes them.

Generates a batch of each synthetic dataset at 128 px (one process, as a single DataLoader worker
would) and times one training step of protopnet_resnet18 on a batch of the same size, in the same
run. Goal: generation at least 3x faster than the step.

    python benchmarks/bench_data.py [--batch 16] [--size 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import protozoo
from protozoo.data.collate import collate_items
from protozoo.data.synthetic import SyntheticFundus, SyntheticMammo, SyntheticParts
from protozoo.train import Recipe
from protozoo.train.losses import protopnet_loss


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    datasets = {
        cls.__name__: cls("train", image_size=args.size, num_samples=10_000)
        for cls in (SyntheticMammo, SyntheticFundus, SyntheticParts)
    }
    model = protozoo.create_model("protopnet_resnet18", num_classes=6, in_chans=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    weights = Recipe().loss
    batch = collate_items([datasets["SyntheticParts"][i] for i in range(args.batch)])

    def step():
        output = model(batch["image"])
        loss, _ = protopnet_loss(model, output, batch, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    step_s = median_seconds(step, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size} px")
    print(f"training step of protopnet_resnet18: {step_s * 1000:.1f} ms")
    offset = iter(range(0, 10_000, args.batch))
    for name, dataset in datasets.items():

        def generate(dataset=dataset):
            start = next(offset)
            collate_items([dataset[start + i] for i in range(args.batch)])

        gen_s = median_seconds(generate, args.repeats)
        ratio = step_s / gen_s
        verdict = "meets" if ratio >= 3 else "MISSES"
        print(
            f"{name:15s} {gen_s * 1000:7.1f} ms per batch ({gen_s / args.batch * 1000:.2f} ms/sample): "
            f"generation is {ratio:.1f}x faster than the step, {verdict} the 3x goal"
        )


if __name__ == "__main__":
    main()
