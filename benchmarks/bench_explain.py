"""What explaining costs: ``protozoo.explain`` (rendering aside) vs one forward pass, one 224 px image.

protopnet_resnet18 (200 classes, 2000 prototypes as on CUB), CPU, batch 1, both measured alternately
in the same run. Goal: explain <= 2x forward (it reuses the forward pass's distance maps, so the
extra is the top-k heatmaps: activation, bicubic upsampling, percentile boxes).

    python benchmarks/bench_explain.py [--size 224] [--top-k 5] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import protozoo
from protozoo.explanation import explain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_resnet18", num_classes=args.classes).eval()
    x = torch.randn(1, 3, args.size, args.size)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    steps = {"forward": forward, "explain": lambda: explain(model, x, args.top_k)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.warmup + args.repeats):
        for name, step in steps.items():  # alternate so drift hits both equally
            start = time.perf_counter()
            step()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, 1 image, {args.size} px, "
        f"{model.num_prototypes} prototypes, top-{args.top_k}, {args.repeats} repeats"
    )
    for name, median in medians.items():
        print(f"{name:>8}: {median * 1e3:8.1f} ms (median)")
    ratio = medians["explain"] / medians["forward"]
    print(f"explain / forward = {ratio:.2f}x (goal <= 2.00x): {'OK' if ratio <= 2.0 else 'OVER'}")


if __name__ == "__main__":
    main()
