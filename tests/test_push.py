"""Prototype push: exact projection onto own-class patches, the same choices as a plain loop,
source diversity, batch-size independence, provenance (boxes, reload) and a 2-process gloo run."""

import copy
import json
import socket
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import protozoo
from protozoo.push import high_activation_boxes, mask_boxes, percentile, push_prototypes
from protozoo.resample import upsample_bicubic

SMALL = dict(num_classes=3, prototypes_per_class=2, prototype_dim=16)
SIZE = 64  # px: a 2 x 2 latent map with resnet18


def make_model(**overrides):
    return protozoo.create_model("protopnet_resnet18", **{**SMALL, **overrides}).eval()


def make_data(n, *, labels=None, seed=0):
    """n distinct random images with labels 0, 1, 2, 0, ... (or the given ones) and stable ids."""
    generator = torch.Generator().manual_seed(seed)
    labels = labels or [i % SMALL["num_classes"] for i in range(n)]
    return [
        {"image": torch.randn(3, SIZE, SIZE, generator=generator), "label": y, "id": f"img{i:02d}", "path": f"/{i}.png"}
        for i, y in enumerate(labels)
    ]


def loader(data, batch_size=5):
    return DataLoader(data, batch_size=batch_size)


def choices(provenance):
    return [(row["image_id"], row["feature_hw"]) for row in provenance]


@pytest.fixture(scope="module")
def setup():
    """A model, 12 images (4 per class) and every image's latent map, computed once."""
    torch.manual_seed(0)
    model, data = make_model(), make_data(12)
    with torch.no_grad():
        latents = model.latent(torch.stack([d["image"] for d in data]))  # (N, D, H, W)
    return model, data, latents


@pytest.fixture(scope="module")
def pushed(setup):
    """``pushed(unique_source, class_specific)`` -> (pushed copy of the model, PushResult), run once each."""
    model, data, _ = setup
    cache = {}

    def run(unique_source, class_specific=True):
        if (unique_source, class_specific) not in cache:
            copied = copy.deepcopy(model)
            result = push_prototypes(copied, loader(data), class_specific=class_specific, unique_source=unique_source)
            cache[unique_source, class_specific] = copied, result
        return cache[unique_source, class_specific]

    return run


def reference_push(model, data, latents, *, class_specific, unique_source):
    """The obviously correct selection: every (prototype, image) pair scanned in Python."""
    with torch.no_grad():
        distances = model.head.distance_maps(latents).flatten(2)  # (N, P, H*W)
    classes, width = model.prototype_class.tolist(), latents.shape[3]
    best = {}  # (prototype, image) -> (distance, flat index of the image's best patch)
    for p in range(model.num_prototypes):
        for i, sample in enumerate(data):
            if not class_specific or sample["label"] == classes[p]:
                row = distances[i, p].tolist()
                best[p, i] = (min(row), row.index(min(row)))
    nearest = {p: min((d, i, f) for (q, i), (d, f) in best.items() if q == p)[1:] for p in range(len(classes))}
    choice = nearest
    if unique_source != "none":
        choice, used = {}, set()
        for _d, p, i, f in sorted((d, p, i, f) for (p, i), (d, f) in best.items()):
            image = (classes[p] if unique_source == "per_class" else None, i)
            if p not in choice and image not in used:
                choice[p] = (i, f)
                used.add(image)
        choice = {p: choice.get(p, nearest[p]) for p in nearest}
    return [(data[i]["id"], [f // width, f % width]) for _, (i, f) in sorted(choice.items())]


@pytest.mark.parametrize("unique_source", ["none", "per_class", "global"])
def test_prototypes_become_own_class_latent_patches(setup, pushed, unique_source):
    data = setup[1]
    model, result = pushed(unique_source)
    assert model.provenance is result.provenance and len(result.provenance) == model.num_prototypes
    by_id = {d["id"]: i for i, d in enumerate(data)}
    for p, row in enumerate(result.provenance):
        i = by_id[row["image_id"]]
        assert row["class"] == row["label"] == data[i]["label"] == int(model.prototype_class[p])
        assert row["path"] == data[i]["path"] and row["feature_size"] == [2, 2]
        with torch.no_grad():
            z = model.latent(data[i]["image"][None])  # (1, D, H, W), recomputed alone
            h, w = row["feature_hw"]
            assert (model.prototypes[p] - z[0, :, h, w]).abs().max() < 1e-5
            assert model.head.distance_maps(z)[0, p].min() < 1e-5
    assert result.distances.shape == (model.num_prototypes,) and result.changed.all()


@pytest.mark.parametrize("class_specific", [True, False])
@pytest.mark.parametrize("unique_source", ["none", "per_class", "global"])
def test_same_choices_as_a_plain_loop(setup, pushed, unique_source, class_specific):
    expected = reference_push(*setup, class_specific=class_specific, unique_source=unique_source)
    _, result = pushed(unique_source, class_specific)
    assert choices(result.provenance) == expected
    ids = [row["image_id"] for row in result.provenance]
    if unique_source == "global":
        assert len(set(ids)) == len(ids)
    if unique_source == "per_class":
        for c in range(SMALL["num_classes"]):
            of_class = [i for i, row in zip(ids, result.provenance) if row["class"] == c]
            assert len(set(of_class)) == len(of_class)
    if unique_source == "none":  # the test data makes diversity matter: plain push reuses images
        assert len(set(ids)) < len(ids)


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_choices_do_not_depend_on_batch_size_or_order(setup, pushed, batch_size):
    model, data, _ = setup
    expected_model, expected = pushed("global", False)
    model = copy.deepcopy(model)
    result = push_prototypes(model, loader(data[::-1], batch_size), class_specific=False, unique_source="global")
    assert choices(result.provenance) == choices(expected.provenance)
    torch.testing.assert_close(model.prototypes, expected_model.prototypes, atol=1e-5, rtol=0)


def test_too_few_images_of_a_class_warns_and_reuses():
    model = make_model()
    data = make_data(5, labels=[0, 0, 1, 1, 2])  # class 2: one image for two prototypes
    with pytest.warns(UserWarning, match=r"class 2 has 1 image\(s\) for its 2 prototypes; prototype\(s\) \[[45]\]"):
        result = push_prototypes(model, loader(data), unique_source="per_class")
    rows = result.provenance
    assert [row["reused_source"] for row in rows[:4]] == [False] * 4
    assert rows[4]["reused_source"] != rows[5]["reused_source"]
    assert rows[4]["image_id"] == rows[5]["image_id"] == "img04"
    with pytest.raises(ValueError, match=r"no image of class \['2'\]"):
        push_prototypes(make_model(), loader(data[:4]))


def test_repeated_ids_count_as_one_image():
    data = make_data(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = push_prototypes(make_model(), loader(data + [data[0]]), unique_source="per_class")
    assert sorted(str(w.message).split(" for its")[0] for w in caught) == [
        f"push with unique_source='per_class': class {c} has 1 image(s)" for c in range(3)
    ]
    assert result.provenance[0]["image_id"] == result.provenance[1]["image_id"] == "img00"


def test_provenance_survives_save_and_load(pushed, tmp_path):
    model, _ = pushed("global")
    json.dumps(model.provenance)  # JSON-able
    reloaded = protozoo.load(str(model.save_pretrained(tmp_path / "pushed")))
    assert reloaded.provenance == model.provenance
    assert torch.equal(reloaded.prototypes, model.prototypes)


def test_boxes_and_self_similarity_map(setup):
    model, data, _ = setup
    model = copy.deepcopy(model)
    for module in model.modules():  # timm zero-inits each block's last BN; trained nets have live branches
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    push_prototypes(model, loader(data), unique_source="global")
    by_id = {d["id"]: d for d in data}
    stride = model.backbone.reduction
    for p, row in enumerate(model.provenance):
        with torch.no_grad():
            similarity = model.similarity_maps(by_id[row["image_id"]]["image"][None])[0, p]  # (H, W)
        # log similarity amplifies round-off near d = 0 (the source cell): 1e-6 in d is 1e-2 there
        torch.testing.assert_close(torch.tensor(row["self_similarity_map"]), similarity, atol=1e-4, rtol=1e-2)
        up = F.interpolate(similarity[None, None], size=(SIZE, SIZE), mode="bicubic", align_corners=False)[0, 0]
        y, x = divmod(int(up.argmax()), SIZE)
        x0, y0, x1, y1 = row["high_activation_box"]
        assert x0 <= x < x1 and y0 <= y < y1
        assert (x1 - x0) * (y1 - y0) < SIZE * SIZE  # the 95th percentile crop is a real crop
        h, w = row["feature_hw"]
        x0, y0, x1, y1 = row["receptive_field_box"]
        assert x0 <= (w + 0.5) * stride < x1 and y0 <= (h + 0.5) * stride < y1


def test_high_activation_helpers_are_exact():
    """Matmul bicubic = F.interpolate (to rounding); the percentile interpolates the sorted values; boxes do not
    depend on batching (push computes them in chunks, a per-prototype loop one at a time)."""
    torch.manual_seed(0)
    maps, size = torch.randn(40, 7, 7), (224, 200)
    maps[0] = 0.0  # every pixel ties
    up = upsample_bicubic(maps, size)  # (40, 224, 200)
    reference = F.interpolate(maps[:, None], size=size, mode="bicubic", align_corners=False)[:, 0]
    torch.testing.assert_close(up, reference, atol=1e-5, rtol=1e-5)
    x, ordered = up.flatten(1), up.flatten(1).sort(dim=1).values
    for q in (0, 50, 95, 100):
        position = q / 100 * (x.shape[1] - 1)
        lo, hi = int(position), min(int(position) + 1, x.shape[1] - 1)
        assert torch.equal(percentile(x, q), ordered[:, lo] + (position - lo) * (ordered[:, hi] - ordered[:, lo]))
    boxes = high_activation_boxes(maps, size)
    assert torch.equal(boxes, mask_boxes(up >= percentile(x, 95)[:, None, None]))
    assert torch.equal(boxes, torch.cat([high_activation_boxes(m[None], size) for m in maps]))
    assert boxes[0].tolist() == [0, 0, 200, 224]


def test_receptive_field_box_is_what_the_cell_reads(setup, pushed):
    """Untrained timm ResNets have silent residual branches: each cell reads a small exact window."""
    model, _ = pushed("none")
    x = setup[1][0]["image"][None]
    for row in model.provenance:
        (h, w), (x0, y0, x1, y1) = row["feature_hw"], row["receptive_field_box"]
        assert (x1 - x0) * (y1 - y0) < SIZE * SIZE / 4
        outside = torch.randn_like(x)
        outside[..., y0:y1, x0:x1] = x[..., y0:y1, x0:x1]
        inside = x.clone()
        inside[..., y0:y1, x0:x1] += 1
        with torch.no_grad():
            cell, cell_outside, cell_inside = (model.latent(v)[0, :, h, w] for v in (x, outside, inside))
        assert (cell - cell_outside).abs().max() < 1e-5
        assert (cell - cell_inside).abs().max() > 1e-3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distributed_worker(rank, world, port, folder, n):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = protozoo.load(str(folder / "model"))
        data = make_data(n)
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=False)  # pads by repeating
        shard = DataLoader(data, batch_size=2, sampler=sampler)
        push_prototypes(model, shard, class_specific=False, unique_source="global")
        torch.save({"provenance": model.provenance, "prototypes": model.prototypes.data}, folder / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_gloo_push_equals_one_process(tmp_path):
    n = 11  # odd: the sampler repeats an image on the second rank
    model = make_model()
    model.save_pretrained(tmp_path / "model")
    torch.multiprocessing.spawn(distributed_worker, args=(2, free_port(), tmp_path, n), nprocs=2)
    push_prototypes(model, loader(make_data(n)), class_specific=False, unique_source="global")
    for rank in range(2):
        shard = torch.load(tmp_path / f"rank{rank}.pt")
        assert choices(shard["provenance"]) == choices(model.provenance)
        torch.testing.assert_close(shard["prototypes"], model.prototypes.data, atol=1e-5, rtol=0)
