"""Prototype push: speed against ProtoPNet's per-prototype loop, and memory as the data grows.

Speed. Both pushes run on the same cached latent and distance maps: the backbone pass is common to
both, done once per setting and timed apart. The baseline, :func:`loop_push`, is a straightforward
port of the original push (cfchen-duke/ProtoPNet, ``push.py``, ``update_prototypes_on_batch``). Per
batch it copies the latent and distance maps to numpy, builds a class -> image index dict, and loops
over the prototypes in Python: the prototype's maps on its class's images (``distances[images][:,
j]``, which copies every prototype's maps of those images, as the original indexes), ``np.amin``,
and when that beats the prototype's best so far, an update. The original does its provenance work
on every update, not once at the end, and so does the baseline: the argmin (``np.unravel_index``),
the latent patch, the receptive-field box (``compute_rf_prototype``; here a lookup in a per-cell
table computed once, as the original's ``proto_layer_rf_info``), the similarity map of the
prototype on that image, upsampled bicubically to the input size, and the box of its pixels at or
above the 95th percentile (``cv2.resize(INTER_CUBIC)`` + ``find_high_activation_crop``).

To record the same provenance as protozoo, the map is that of the new prototype (the original takes
the stored map of the old one, which saves one small distance computation per update), and the
upsample and box are protozoo's own helpers called on the one map, so every id, cell, distance,
vector, receptive-field box, high-activation box and map must come out identical (asserted). Both
simplifications favour the baseline: the one-hot ``argmax`` per prototype and batch is hoisted, and
the single-map helper takes about half the time of the original's ``cv2.resize`` +
``np.percentile`` + row/column scans. The labels are ``index % classes``, so every class recurs
batch after batch; the original's class-sorted, unshuffled push loader gives fewer updates.

The other side is the real :func:`protozoo.push.push_prototypes` (selection, provenance of the
final prototypes, writing them) on the same maps, with the same receptive-field table: it depends on
the architecture and input size only (``push_prototypes`` finds it by gradient probes on every push;
the time is printed). "Selection alone" leaves out all provenance on both sides.

Memory: a whole ``push_prototypes`` run on N and 4N images, each in a fresh process whose images
are generated on the fly, reporting its resident memory before the push and at the push's peak
(Linux ``VmHWM``, reset through /proc/self/clear_refs just before; it counts torch's CPU tensors,
which tracemalloc does not).

Whole calls (the default section, what a user waits for): ``push_prototypes(model, loader)`` timed
from the call to its return (data loading, backbone, selection, receptive fields, boxes,
provenance), against (1) one plain forward pass ``model(x)`` over the same loader under
``torch.no_grad`` and (2) the reference structure's whole push: the same loader, its own forward
pass per batch, then :func:`loop_push`'s per-batch loop with per-update provenance. The reference
reads receptive fields from a table computed before the clock starts (the original computes
``proto_layer_rf_info`` once when it builds the model). ``push_prototypes`` is timed with no cache at
all (receptive fields probed: the first push of an architecture and input size on a machine), as
the first push of a process (the in-memory cache cleared, the boxes read from the disk cache, in a
temporary folder of the bench) and warm (a later push in the same process, as in training). Timings:
the median of ``--whole-repeats`` interleaved rounds. Not timed: model construction, the table.

    python benchmarks/bench_push.py [--whole-images 96] [--whole-size 160]   # whole calls only
    python benchmarks/bench_push.py --parts [--cub-images 1000] [--small-images 320] [--memory-images 128]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from _clock import add_clock_argument, describe, now, set_clock
from torch.utils.data import DataLoader, Dataset

import protozoo
import protozoo.push
from protozoo._push_select import assign, merge
from protozoo.push import _gather, _stream, high_activation_boxes, push_prototypes, receptive_field_boxes

# name: classes, prototypes per class, input px, push batch (the original's train_push_batch_size is 75)
SETTINGS = {"CUB": (200, 10, 224, 75), "small": (10, 10, 128, 32)}


class RandomImages(Dataset):
    """n images generated from their index (memory does not grow with n), labels index % classes."""

    def __init__(self, n: int, size: int, num_classes: int):
        self.n, self.size, self.num_classes = n, size, num_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        generator = torch.Generator().manual_seed(i)
        image = torch.randn(3, self.size, self.size, generator=generator)
        return {"image": image, "label": i % self.num_classes, "id": f"img{i:06d}"}


def build_model(num_classes: int, per_class: int) -> protozoo.models._base.ProtoModel:
    torch.manual_seed(0)
    return protozoo.create_model("protopnet_resnet18", num_classes=num_classes, prototypes_per_class=per_class).eval()


def cache_maps(model, loader) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """(latent (B, D, H, W), distance maps (B, P, H, W), batch) per batch: what both pushes read.

    The batch keeps a zero-stride stand-in of its images (only their shape is read)."""
    cached = []
    with torch.no_grad():
        for batch in loader:
            z = model.latent(batch["image"])
            stand_in = torch.zeros(()).expand(batch["image"].shape)
            cached.append((z, model.head.distance_maps(z), {**batch, "image": stand_in}))
    return cached


def cell_boxes(model, feature_size, input_size) -> torch.Tensor:
    """(H * W, 4) receptive-field box of every latent cell, row h * W + w (computed once)."""
    cells = torch.cartesian_prod(torch.arange(feature_size[0]), torch.arange(feature_size[1]))
    return receptive_field_boxes(model, cells, input_size)


@contextlib.contextmanager
def on_cached_maps(model, cached, table):
    """``model`` reads the stored maps batch by batch (instead of running), and receptive-field boxes from ``table``."""
    latents, distances = iter([z for z, _, _ in cached]), iter([d for _, d, _ in cached])
    model.latent = lambda x: next(latents)  # instance attributes shadow the methods
    model.head.distance_maps = lambda z: next(distances)
    width = cached[0][0].shape[3]
    lookup = lambda model, cells, size: table[cells[:, 0] * width + cells[:, 1]]  # noqa: E731
    try:
        with mock.patch.object(protozoo.push, "receptive_field_boxes", lookup):
            yield [batch for _, _, batch in cached]
    finally:
        del model.latent, model.head.distance_maps


def protozoo_push(model, cached, table, unique_source="none"):
    """push_prototypes on the stored maps; -> its provenance."""
    with on_cached_maps(model, cached, table) as loader, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # with unique sources, few images per class: reused-source warnings
        return push_prototypes(model, loader, unique_source=unique_source).provenance


def protozoo_selection(model, cached, table):
    """push_prototypes' selection alone (stream, merge, choose), without provenance."""
    with on_cached_maps(model, cached, table) as loader, torch.no_grad():
        return assign(merge(_gather(_stream(model, loader, k=1, class_specific=True, progress=False)), 1), None)


def loop_push(model, cached, table, provenance=True):
    """The original ProtoPNet push (see the module docstring); -> provenance rows, (P, D) vectors, updates."""
    classes = model.prototype_class.tolist()  # the original: argmax of the one-hot row, per batch
    num_prototypes, dim = model.prototypes.shape
    rows, updates, width = [None] * num_prototypes, 0, None
    best = np.full(num_prototypes, np.inf)
    vectors = np.zeros((num_prototypes, dim), np.float32)
    for z, d, batch in cached:  # a list of stored maps, or maps computed batch by batch (whole push)
        if width is None:
            width, input_size = z.shape[3], tuple(batch["image"].shape[2:])
        latents, distances = np.copy(z.numpy()), np.copy(d.numpy())  # (B, D, H, W), (B, P, H, W)
        class_to_images = {c: [] for c in range(model.num_classes)}
        for i, label in enumerate(batch["label"].tolist()):
            class_to_images[label].append(i)
        for j in range(num_prototypes):
            images = class_to_images[classes[j]]
            if not images:
                continue
            distances_j = distances[images][:, j]  # (n_c, H, W)
            batch_min = np.amin(distances_j)
            if batch_min < best[j]:
                i, h, w = np.unravel_index(np.argmin(distances_j), distances_j.shape)
                i, updates = images[i], updates + 1
                best[j] = batch_min
                vectors[j] = latents[i, :, h, w]
                if not provenance:
                    continue
                # the original's per-update provenance: receptive field, activation map, its crop
                rf_box = table[h * width + w]
                self_distance = model.head.distance(z[i : i + 1], torch.from_numpy(vectors[j])[None])
                similarity = model.head.activation(self_distance[0])  # (1, H, W)
                ha_box = high_activation_boxes(similarity, input_size)[0]
                rows[j] = (batch["id"][i], [int(h), int(w)], float(batch_min), rf_box, ha_box, similarity[0])
    return rows, torch.from_numpy(vectors), updates


def check_identical(model, provenance, rows, vectors) -> bool:
    same = torch.equal(model.prototypes.detach(), vectors)
    for row, (image_id, cell, distance, rf_box, ha_box, similarity) in zip(provenance, rows):
        same &= (row["image_id"], row["feature_hw"], row["distance"]) == (image_id, cell, distance)
        same &= row["receptive_field_box"] == rf_box.tolist() and row["high_activation_box"] == ha_box.tolist()
        same &= row["self_similarity_map"] == [[round(v, 5) for v in r] for r in similarity.tolist()]
    return same


def best_times(fns, repeats: int) -> list[tuple[float, object]]:
    """(best time, last output) of each function, run in turns so that they share the machine's load."""
    times, outs = [[] for _ in fns], [None] * len(fns)
    for _ in range(repeats):
        for n, fn in enumerate(fns):
            start = now()
            outs[n] = fn()
            times[n].append(now() - start)
    return [(min(t), out) for t, out in zip(times, outs)]


def speed(name: str, images: int, repeats: int) -> float:
    num_classes, per_class, size, batch = SETTINGS[name]
    model = build_model(num_classes, per_class)
    loader = DataLoader(RandomImages(images, size, num_classes), batch_size=batch)
    threads = torch.get_num_threads()
    start = now()
    cached = cache_maps(model, loader)
    backbone = now() - start
    feature_size = tuple(cached[0][0].shape[2:])
    start = now()
    table = cell_boxes(model, feature_size, (size, size))
    probes = now() - start
    torch.set_num_threads(1)  # the loop is single-threaded numpy
    initial = model.prototypes.detach().clone()
    (slow, (rows, vectors, updates)), (fast, provenance) = best_times(
        [lambda: loop_push(model, cached, table), lambda: protozoo_push(model, cached, table)], repeats
    )
    identical = check_identical(model, provenance, rows, vectors)
    (slow_selection, _), (fast_selection, _) = best_times(
        [lambda: loop_push(model, cached, table, provenance=False), lambda: protozoo_selection(model, cached, table)],
        repeats,
    )
    modes = ("per_class", "global")
    unique = best_times([lambda m=m: protozoo_push(model, cached, table, m) for m in modes], repeats)
    model.head.prototypes.data.copy_(initial)
    torch.set_num_threads(threads)
    print(
        f"{name}: {num_classes} classes x {per_class} prototypes, {images} images of {size} px -> "
        f"{feature_size[0]}x{feature_size[1]} latent maps, batch {batch}; backbone + distance maps once "
        f"({backbone:.1f} s), receptive-field table once ({probes:.1f} s), {threads} threads; then 1 thread:"
    )
    print(
        f"  per-prototype loop (ProtoPNet), provenance on each of its {updates} updates "
        f"({updates / len(rows):.2f} per prototype): {slow * 1e3:7.1f} ms"
    )
    print(
        f"  push_prototypes, provenance of its {len(rows)} prototypes: {fast * 1e3:7.1f} ms: "
        f"{slow / fast:5.1f}x faster; identical choices and provenance: {identical}"
    )
    print(
        f"  selection alone: loop {slow_selection * 1e3:7.1f} ms, push_prototypes' {fast_selection * 1e3:6.1f} ms: "
        f"{slow_selection / fast_selection:5.1f}x"
    )
    times = ", ".join(f"{mode!r}: {seconds * 1e3:.1f} ms" for mode, (seconds, _) in zip(modes, unique))
    print(f"  push_prototypes with unique_source {times}")
    assert identical, "push_prototypes chose or recorded differently from the loop"
    return slow / fast


def median_times(fns, repeats: int) -> list[tuple[float, list[float], object]]:
    """(median time, every time, last output) of each function, run in turns so that they share the
    machine's load."""
    times, outs = [[] for _ in fns], [None] * len(fns)
    for _ in range(repeats):
        for n, fn in enumerate(fns):
            start = now()
            outs[n] = fn()
            times[n].append(now() - start)
    return [(sorted(t)[(len(t) - 1) // 2], t, out) for t, out in zip(times, outs)]


def whole(images: int, size: int, batch: int, repeats: int) -> None:
    """Whole push_prototypes vs one plain forward pass and vs the reference's whole push (module doc)."""
    import os
    import tempfile

    from protozoo.receptive_field import clear_cache

    os.environ["PROTOZOO_CACHE"] = tempfile.mkdtemp(prefix="bench_push_cache_")  # the user's cache untouched
    num_classes, per_class = 3, 10
    model = build_model(num_classes, per_class)
    loader = DataLoader(RandomImages(images, size, num_classes), batch_size=batch)
    initial = model.prototypes.detach().clone()
    with torch.no_grad():
        feature_size = tuple(model.latent(torch.zeros(1, 3, size, size)).shape[2:])
    table = cell_boxes(model, feature_size, (size, size))

    def forward():
        with torch.no_grad():
            for b in loader:
                model(b["image"])

    def push(memory: bool = True, disk: bool = True):
        model.head.prototypes.data.copy_(initial)
        if not memory:
            clear_cache(disk=not disk)
        return push_prototypes(model, loader).provenance

    def reference():
        model.head.prototypes.data.copy_(initial)
        with torch.no_grad():
            maps = ((z, model.head.distance_maps(z), b) for b in loader for z in [model.latent(b["image"])])
            return loop_push(model, maps, table)

    push()  # warm-up (and fills the caches once)
    runs = median_times(
        [forward, lambda: push(memory=False, disk=False), lambda: push(memory=False), push, reference], repeats
    )
    (t_forward, a_forward, _), (t_cold, a_cold, _), (t_first, a_first, _), (t_warm, a_warm, provenance) = runs[:4]
    t_ref, a_ref, (rows, vectors, _) = runs[4]
    model.head.prototypes.data.copy_(initial)
    push()
    identical = check_identical(model, provenance, rows, vectors)

    def every(times):
        return "[" + " ".join(f"{t:.2f}" for t in times) + "]"

    print(
        f"whole calls: protopnet_resnet18, {num_classes} classes x {per_class} prototypes, {images} images "
        f"of {size} px ({feature_size[0]}x{feature_size[1]} latent), batch {batch}, {torch.get_num_threads()} "
        f"threads, median of {repeats} interleaved rounds [every run], the loader generating images in every call:"
    )
    print(f"  one plain forward pass model(x)     {t_forward:7.2f} s {every(a_forward)}")
    print(
        f"  push_prototypes, no cache at all    {t_cold:7.2f} s {every(a_cold)}  {t_cold / t_forward:5.2f}x the forward "
        f"(receptive fields probed: the first push of this architecture and input size on the machine)"
    )
    print(
        f"  push_prototypes, first of a process {t_first:7.2f} s {every(a_first)}  {t_first / t_forward:5.2f}x the "
        f"forward (boxes read from the disk cache)"
    )
    print(
        f"  push_prototypes, warm cache         {t_warm:7.2f} s {every(a_warm)}  {t_warm / t_forward:5.2f}x the "
        f"forward (goal <= 1.05)"
    )
    print(
        f"  reference whole push (loop port)    {t_ref:7.2f} s {every(a_ref)}  {t_ref / t_forward:5.2f}x the forward; "
        f"push_prototypes / reference: warm {t_warm / t_ref:.2f}x, first of a process {t_first / t_ref:.2f}x, "
        f"no cache {t_cold / t_ref:.2f}x"
    )
    print(f"  identical choices and provenance: {identical}")
    assert identical, "push_prototypes chose or recorded differently from the reference"


def resident_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc/self/status, in KiB."""
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def memory_run(images: int, size: int, batch: int) -> dict:
    """One whole push in this process: resident memory before it and at its peak (MiB)."""
    num_classes, per_class, _, _ = SETTINGS["small"]
    model = build_model(num_classes, per_class)
    loader = DataLoader(RandomImages(images, size, num_classes), batch_size=batch)
    before = resident_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    push_prototypes(model, loader, unique_source="global")
    return {"images": images, "before_mib": before / 1024, "peak_mib": resident_kib("VmHWM") / 1024}


def memory(images: int) -> None:
    _, _, size, batch = SETTINGS["small"]
    print(f"memory: whole push_prototypes (unique_source='global'), small setting, {size} px, batch {batch}:")
    runs = []
    for n in (images, 4 * images):
        command = [sys.executable, __file__, "--memory-run", str(n)]
        output = subprocess.run(command, check=True, capture_output=True, text=True)
        runs.append(json.loads(output.stdout.splitlines()[-1]))
    for run in runs:
        before, peak = run["before_mib"], run["peak_mib"]
        print(
            f"  push on {run['images']:5d} images: resident {before:7.1f} MiB before, peak {peak:7.1f} MiB, "
            f"growth {peak - before:6.1f} MiB"
        )
    small, large = ((run["peak_mib"] - run["before_mib"]) for run in runs)
    print(f"  4x data / 1x data: peak {runs[1]['peak_mib'] / runs[0]['peak_mib']:.3f}x, growth {large / small:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cub-images", type=int, default=1000)
    parser.add_argument("--small-images", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-images", type=int, default=128, help="N of the memory runs (N and 4N)")
    parser.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--whole-images", type=int, default=96)
    parser.add_argument("--whole-size", type=int, default=160)
    parser.add_argument("--whole-repeats", type=int, default=3)
    parser.add_argument("--parts", action="store_true", help="also the cached-map and memory sections")
    add_clock_argument(parser)
    args = parser.parse_args()
    set_clock(args.clock)
    print(f"clock: {args.clock} ({describe()})")
    if args.memory_run:
        _, _, size, batch = SETTINGS["small"]
        print(json.dumps(memory_run(args.memory_run, size, batch)))
        return
    whole(args.whole_images, args.whole_size, 32, args.whole_repeats)
    if not args.parts:
        return
    speed("CUB", args.cub_images, args.repeats)
    speed("small", args.small_images, args.repeats)
    memory(args.memory_images)


if __name__ == "__main__":
    main()
