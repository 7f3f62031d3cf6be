"""Prototype push: speed against ProtoPNet's per-prototype loop, and memory as the data grows.

Speed: both selections run on the same cached latent maps (the backbone pass is common to both and
timed separately): the streaming, vectorised selection of :func:`protozoo.push.push_prototypes`
against the structure of the original ProtoPNet push, which stores each batch's distance maps and
then loops over the prototypes in Python to update each one's best patch. The choices must be
identical. Memory: a whole ``push_prototypes`` run on N and 4N images, each in a fresh process
whose images are generated on the fly, reporting its resident memory before the push and at the
push's peak (Linux ``VmHWM``, reset through /proc/self/clear_refs just before; it counts torch's CPU
tensors, which tracemalloc does not).

    python benchmarks/bench_push.py [--images 320] [--size 128] [--batch 32] [--memory-images 128]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import protozoo
from protozoo._push_select import assign, merge
from protozoo.models._base import ProtoModel
from protozoo.push import _gather, _stream, chosen_sources, push_prototypes

NUM_CLASSES, PROTOTYPES_PER_CLASS = 10, 10


class RandomImages(Dataset):
    """n images generated from their index (memory does not grow with n), labels index % classes."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        generator = torch.Generator().manual_seed(i)
        image = torch.randn(3, self.size, self.size, generator=generator)
        return {"image": image, "label": i % NUM_CLASSES, "id": f"img{i:06d}"}


def build_model(num_classes: int = NUM_CLASSES) -> ProtoModel:
    torch.manual_seed(0)
    return protozoo.create_model(
        "protopnet_resnet18", num_classes=num_classes, prototypes_per_class=PROTOTYPES_PER_CLASS
    ).eval()


def with_classes(cached, num_classes: int):
    """The cached latents under a head with more classes: its distance maps, labels index % classes."""
    model = build_model(num_classes)
    relabelled = []
    with torch.no_grad():
        for z, _, batch in cached:
            labels = torch.tensor([int(i[3:]) % num_classes for i in batch["id"]])
            relabelled.append((z, model.head.distance_maps(z), {**batch, "label": labels}))
    return model, relabelled


def compare(model, cached, repeats: int) -> float:
    """Time both selections on the same stored maps, check identical choices; -> speed-up."""
    fast, (fast_where, fast_vectors) = best_time(lambda: vectorised_selection(model, cached), repeats)
    slow, (slow_where, slow_vectors) = best_time(lambda: loop_selection(model, cached), repeats)
    identical = fast_where == slow_where and torch.equal(fast_vectors, slow_vectors)
    print(f"{model.num_classes:4d} classes x {PROTOTYPES_PER_CLASS} prototypes: per-prototype loop (ProtoPNet) "
          f"{slow * 1e3:7.1f} ms, push_prototypes (vectorised) {fast * 1e3:6.1f} ms: "
          f"{slow / fast:5.1f}x faster, identical choices: {identical}")
    assert identical, "the vectorised push chose differently from the loop"
    return slow / fast


def cache_maps(model, loader) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """(latent (B, D, H, W), distance maps (B, P, H, W), batch) per batch: what both selections read."""
    with torch.no_grad():
        return [(z, model.head.distance_maps(z), batch) for z, batch in ((model.latent(b["image"]), b) for b in loader)]


def vectorised_selection(model, cached, unique_source="none"):
    """push_prototypes' selection (stream, merge, assign) on the stored maps; -> choices, vectors."""
    latents, distances = iter([z for z, _, _ in cached]), iter([d for _, d, _ in cached])
    model.latent = lambda x: next(latents)  # instance attributes shadow the methods
    model.head.distance_maps = lambda z: next(distances)
    try:
        k = 1 if unique_source == "none" else PROTOTYPES_PER_CLASS
        with torch.no_grad():
            local = _stream(model, [batch for _, _, batch in cached], k=k, class_specific=True, progress=False)
            candidates = merge(_gather(local), k)
        group = None if unique_source == "none" else model.prototype_class
        choice = assign(candidates, group)
    finally:
        del model.latent, model.head.distance_maps
    chosen, _, vectors = chosen_sources(candidates, choice)
    width = candidates.feature_size[1]
    codes, flats = chosen["code"].tolist(), chosen["flat"].tolist()
    where = [(candidates.names[c][0], f // width, f % width) for c, f in zip(codes, flats)]
    return where, vectors


def loop_selection(model, cached):
    """The original ProtoPNet push: per batch, the stored distance maps in numpy, a loop over prototypes."""
    classes = model.prototype_class.numpy()
    num_prototypes, dim = model.prototypes.shape
    best = np.full(num_prototypes, np.inf)
    where, source_latents = [None] * num_prototypes, [None] * num_prototypes
    vectors = np.zeros((num_prototypes, dim), np.float32)
    for z, d, batch in cached:
        distances = np.copy(d.numpy())  # (B, P, H, W)
        latents = np.copy(z.numpy())  # (B, D, H, W)
        class_to_images = {c: [] for c in range(model.num_classes)}
        for i, label in enumerate(batch["label"].tolist()):
            class_to_images[label].append(i)
        for j in range(num_prototypes):
            images = class_to_images[int(classes[j])]
            if not images:
                continue
            distances_j = distances[images][:, j]  # (n_c, H, W)
            batch_min = np.amin(distances_j)
            if batch_min < best[j]:
                i, h, w = np.unravel_index(np.argmin(distances_j), distances_j.shape)
                best[j] = batch_min
                where[j] = (batch["id"][images[i]], int(h), int(w))
                vectors[j] = latents[images[i], :, h, w]
                source_latents[j] = latents[images[i]].copy()
    return where, torch.from_numpy(vectors)


def best_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def speed(args) -> None:
    model = build_model()
    loader = DataLoader(RandomImages(args.images, args.size), batch_size=args.batch)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    cached = cache_maps(model, loader)
    backbone = time.perf_counter() - start
    torch.set_num_threads(1)  # the loop is single-threaded numpy; small torch ops gain nothing from threads
    print(f"protopnet_resnet18, {args.images} images of {args.size} px, batch {args.batch}; "
          f"backbone, add-on and distance maps once ({backbone:.1f} s on {threads} threads), then both "
          "selections on the stored maps, 1 thread:")
    compare(model, cached, args.repeats)
    compare(*with_classes(cached, args.large_classes), args.repeats)
    for mode in ("per_class", "global"):
        seconds, _ = best_time(lambda: vectorised_selection(model, cached, mode), args.repeats)
        print(f"{NUM_CLASSES} classes, push_prototypes with unique_source={mode!r}: {seconds * 1e3:6.1f} ms")
    torch.set_num_threads(threads)
    start = time.perf_counter()
    push_prototypes(model, loader)
    print(f"whole push_prototypes (backbone, selection, boxes), {threads} threads: {time.perf_counter() - start:.1f} s")


def resident_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc/self/status, in KiB."""
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def memory_run(images: int, size: int, batch: int) -> dict:
    """One whole push in this process: resident memory before it and at its peak (MiB)."""
    model = build_model()
    loader = DataLoader(RandomImages(images, size), batch_size=batch)
    before = resident_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    push_prototypes(model, loader, unique_source="global")
    return {"images": images, "before_mib": before / 1024, "peak_mib": resident_kib("VmHWM") / 1024}


def memory(args) -> None:
    runs = []
    for images in (args.memory_images, 4 * args.memory_images):
        command = [sys.executable, __file__, "--memory-run", str(images), "--size", str(args.size)]
        output = subprocess.run(command + ["--batch", str(args.batch)], check=True, capture_output=True, text=True)
        runs.append(json.loads(output.stdout.splitlines()[-1]))
    for run in runs:
        before, peak = run["before_mib"], run["peak_mib"]
        print(f"push on {run['images']:5d} images: resident {before:7.1f} MiB before, peak {peak:7.1f} MiB, "
              f"growth {peak - before:6.1f} MiB")
    small, large = ((run["peak_mib"] - run["before_mib"]) for run in runs)
    print(f"4x data / 1x data: peak {runs[1]['peak_mib'] / runs[0]['peak_mib']:.3f}x, growth {large / small:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--large-classes", type=int, default=200, help="a second, CUB-sized head (200 classes)")
    parser.add_argument("--memory-images", type=int, default=128, help="N of the memory runs (N and 4N)")
    parser.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        print(json.dumps(memory_run(args.memory_run, args.size, args.batch)))
        return
    speed(args)
    memory(args)


if __name__ == "__main__":
    main()
