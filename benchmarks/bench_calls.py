"""The framework's own overhead on whole user-facing calls, each against its bare baseline in the same run.

1. One ``protozoo.train.fit`` epoch (a recipe of one joint epoch, no push, no output folder) against a
   bare PyTorch loop over the same dataset: ``DataLoader(shuffle=True, batch_size=B)`` with
   PyTorch's default collate, ``model(x)``, the same loss function (the family's, called directly),
   ``zero_grad`` / ``backward`` / ``step`` of an Adam with the same parameter groups and learning
   rates. Timed: the whole ``fit`` call (recipe print silenced, progress bars off) and the whole
   bare loop, each from a copy of the same model. What ``fit`` adds and is timed: its collate,
   input checks, per-batch metric sums, the end-of-epoch reduction, optimizer construction.
2. The zoo model's forward ``model(x)`` against the same timm backbone truncated by hand
   (``timm.create_model(features_only=True, out_indices=(stage,))`` with the blocks past the stage
   sliced off by hand) followed by the same head module, on the same weights and
   input, under ``torch.inference_mode``. Asserts equal outputs.

Both run alternately, the median of ``--repeats`` rounds (x3 for the forward). Goals: fit / bare <= 1.10, zoo / by hand <= 1.02.

    python benchmarks/bench_calls.py [--images 128] [--size 64] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import warnings

import timm
import torch
from _clock import add_clock_argument, describe, now, set_clock
from torch.utils.data import DataLoader

import protozoo
from protozoo.data import load_dataset
from protozoo.train import Recipe, fit
from protozoo.train.loop import make_optimizers
from protozoo.train.tasks import task_for


def best_times(fns, repeats: int) -> list[float]:
    """The median time of each function over ``repeats`` interleaved rounds (they share the load);
    every run's times are kept in ``LAST_RUNS`` for the printout."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for n, fn in enumerate(fns):
            start = now()
            fn()
            times[n].append(now() - start)
    LAST_RUNS[:] = times
    return [sorted(t)[(len(t) - 1) // 2] for t in times]


LAST_RUNS: list[list[float]] = []


def every(n: int, scale: float = 1.0) -> str:
    return "[" + " ".join(f"{t * scale:.{1 if scale > 1 else 2}f}" for t in LAST_RUNS[n]) + "]"


def fit_vs_bare(images: int, size: int, batch: int, repeats: int) -> None:
    data = load_dataset("synthetic-parts", "train", image_size=size, num_samples=images, seed=0)
    torch.manual_seed(0)
    base = protozoo.create_model("protopnet_resnet18", num_classes=data.num_classes, prototypes_per_class=2)
    recipe = Recipe(epochs=1, warm_epochs=0, push_start=10**6, push_at_end=False, last_layer_epochs=0, batch_size=batch)
    assert [step.phase for step in recipe.plan()] == ["joint"]
    task = task_for(base)

    def run_fit():
        fit(copy.deepcopy(base), data, recipe=recipe, progress=False, log=lambda line: None)

    def run_bare():
        model = copy.deepcopy(base).train()
        optimizer = make_optimizers(model, recipe)["joint"]  # the same Adam groups and learning rates
        loader = DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))
        for b in loader:
            out = model(b["image"])
            loss, _ = task.loss(model, out, b, recipe.loss, "joint")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    t_fit, t_bare = best_times([run_fit, run_bare], repeats)
    print(
        f"fit: protopnet_resnet18, {images} synthetic-parts images at {size} px, batch {batch}, one joint epoch, "
        f"{torch.get_num_threads()} threads, median of {repeats} interleaved rounds [every run]:"
    )
    print(f"  bare PyTorch loop  {t_bare:7.2f} s {every(1)}")
    print(f"  protozoo fit       {t_fit:7.2f} s {every(0)}  fit / bare {t_fit / t_bare:5.3f}x (goal <= 1.10)")


def zoo_vs_by_hand(name: str, size: int, batch: int, repeats: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = protozoo.load(name).eval()
    cfg = model.config
    stage = cfg.feature_stage
    body = timm.create_model(
        cfg.backbone, features_only=True, out_indices=(stage,), in_chans=cfg.in_chans, pretrained=False
    )
    body.blocks = body.blocks[: max(body._stage_out_idx)]  # by hand: the blocks up to the one that ends the stage
    body.load_state_dict(model.backbone.body.state_dict(), strict=True)
    body.eval()
    head = model.head
    x = torch.randn(batch, cfg.in_chans, size, size)

    with torch.inference_mode():

        def zoo():
            return model(x)

        def by_hand():
            return head(body(x)[-1])

        assert torch.equal(zoo().logits, by_hand().logits)
        zoo(), by_hand()  # warm-up
        t_zoo, t_hand = best_times([zoo, by_hand], repeats * 3)
    print(
        f"forward: {name} (timm {cfg.backbone}, stage {stage}), batch {batch} at {size} px, inference_mode, "
        f"median of {repeats * 3} interleaved rounds [every run, ms]:"
    )
    print(f"  timm truncated by hand + head  {t_hand * 1e3:7.1f} ms {every(1, 1e3)}")
    print(
        f"  zoo model(x)                   {t_zoo * 1e3:7.1f} ms {every(0, 1e3)}  zoo / by hand {t_zoo / t_hand:5.3f}x "
        "(goal <= 1.02; the zoo side includes its input checks)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--zoo-model", default="protopnet_efficientnet_lite0.synth_parts")
    add_clock_argument(parser)
    args = parser.parse_args()
    set_clock(args.clock)
    print(f"clock: {args.clock} ({describe()})")
    fit_vs_bare(args.images, args.size, args.batch, args.repeats)
    zoo_vs_by_hand(args.zoo_model, 96, args.batch, args.repeats)


if __name__ == "__main__":
    main()
