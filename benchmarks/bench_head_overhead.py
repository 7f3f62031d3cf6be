"""What the ProtoPNet head costs on top of its backbone: protopnet_resnet18 vs timm's resnet18.

One training step (forward, cross-entropy, backward, SGD step) and one inference pass, 224 px,
batch 16, CPU, both models measured alternately in the same run. Goals: train <= 1.15x, infer <= 1.10x.

    python benchmarks/bench_head_overhead.py [--batch 16] [--size 224] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
import torch.nn.functional as F

import protozoo


def logits_of(output):
    return output.logits if hasattr(output, "logits") else output


def train_step(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(logits_of(model(x)), y)
    loss.backward()
    optimizer.step()


@torch.inference_mode()
def infer(model, x):
    logits_of(model(x))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=200, help="200 = CUB, P = 2000 prototypes as in the paper")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch,))
    models = {
        "timm resnet18": timm.create_model("resnet18", num_classes=args.classes),
        "protopnet_resnet18": protozoo.create_model("protopnet_resnet18", num_classes=args.classes),
    }
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=1e-3) for k, m in models.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size} px, "
        f"{args.classes} classes, {args.repeats} repeats"
    )

    results = {}
    for phase in ("train", "infer"):
        times = {k: [] for k in models}
        for i in range(args.warmup + args.repeats):
            for name, model in models.items():  # alternate so drift hits both equally
                if phase == "train":
                    model.train()
                    t = timed(lambda model=model, name=name: train_step(model, optimizers[name], x, y))
                else:
                    model.eval()
                    t = timed(lambda model=model: infer(model, x))
                if i >= args.warmup:
                    times[name].append(t)
        medians = {k: statistics.median(v) for k, v in times.items()}
        ratio = medians["protopnet_resnet18"] / medians["timm resnet18"]
        results[phase] = ratio
        for name, median in medians.items():
            print(f"{phase:5s} {name:20s} {median * 1000:8.1f} ms (median)")
        print(f"{phase:5s} ratio protopnet / timm = {ratio:.3f}")
    goals = {"train": 1.15, "infer": 1.10}
    for phase, ratio in results.items():
        verdict = "meets" if ratio <= goals[phase] else "MISSES"
        print(f"{phase}: {ratio:.3f}x {verdict} the {goals[phase]:.2f}x goal")


if __name__ == "__main__":
    main()
