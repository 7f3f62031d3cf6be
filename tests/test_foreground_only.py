"""``foreground_only`` models (#13): every forward matches the prototypes on the image's automatic
foreground only, so a burned-in label or an empty corner can never be the evidence."""

from __future__ import annotations

import pytest
import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.data.collate import collate_items
from protozoo.foreground import automatic_foreground, foreground_cells
from protozoo.push import push_prototypes

SIZE = 64
TINY = dict(prototypes_per_class=2, prototype_dim=16, feature_stage=2)


def _model(arch: str, foreground_only: bool, **kwargs):
    torch.manual_seed(0)
    return protozoo.create_model(arch, in_chans=1, foreground_only=foreground_only, **TINY, **kwargs).eval()


def _breast_with_label(batch: int = 2) -> torch.Tensor:
    """(B, 1, SIZE, SIZE): a textured breast on the left edge and a bright text label in the far corner."""
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    tissue = ((xx - 8) ** 2 / 28**2 + (yy - 32) ** 2 / 24**2) <= 1
    generator = torch.Generator().manual_seed(1)
    images = torch.full((batch, 1, SIZE, SIZE), -1.5)
    for b in range(batch):
        images[b, 0][tissue] = 0.5 + 0.5 * torch.rand(int(tissue.sum()), generator=generator)
        images[b, 0, 4:12, 46:62] = 3.0  # the label, apart from the tissue
    return images


def _cells(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    return foreground_cells(automatic_foreground(x), tuple(maps.shape[-2:]))  # (B, h, w)


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("protopnet_resnet18", dict(num_classes=3)),
        ("braix_protopnet_pp_resnet18", dict(num_classes=3)),
        ("protopnet_lesion_resnet18", dict(lesion_names=("drusen", "haemorrhage"))),
    ],
)
def test_min_pool_runs_over_the_automatic_foreground_only(arch, kwargs):
    x = _breast_with_label()
    plain, restricted = _model(arch, False, **kwargs), _model(arch, True, **kwargs)
    restricted.load_state_dict(plain.state_dict())
    with torch.no_grad():
        raw, out = plain(x).distance_maps, restricted(x)
    cells = _cells(x, raw)
    assert 0 < cells.float().mean() < 0.5  # the breast: some cells, not the label's
    for b in range(len(x)):  # a plain loop: the min over the foreground cells of the unrestricted maps
        expected = torch.stack([raw[b, p][cells[b]].min() for p in range(raw.shape[1])])
        assert torch.allclose(out.min_distances[b], expected)
        on = cells[b][None].expand_as(raw[b])
        assert torch.equal(out.distance_maps[b][on], raw[b][on])  # foreground cells as they were
        off = out.distance_maps[b].masked_select(~on).view(raw.shape[1], -1)  # (P, off cells)
        assert torch.equal(off, raw[b].flatten(1).amax(dim=1, keepdim=True).expand_as(off))  # the map's coldest
    assert torch.allclose(out.similarities, restricted.head.activation(out.min_distances))
    with torch.no_grad():  # the maps evaluators and explanations read are the forward's
        assert torch.allclose(restricted.distance_maps(x), out.distance_maps)


def test_a_burned_in_label_never_wins_the_match():
    x = _breast_with_label(batch=1)
    plain = _model("braix_protopnet_pp_resnet18", False, num_classes=3)
    with torch.no_grad():
        z = plain.latent(x)  # (1, D, h, w)
        label_cell = (0, z.shape[-1] - 1)  # the top-right cell: the label
        plain.head.prototypes.data[0] = z[0, :, label_cell[0], label_cell[1]]
    restricted = _model("braix_protopnet_pp_resnet18", True, num_classes=3)
    restricted.load_state_dict(plain.state_dict())
    with torch.no_grad():
        before, after = plain(x), restricted(x)
    h, w = z.shape[-2:]
    assert divmod(int(before.distance_maps[0, 0].argmin()), w) == label_cell
    assert before.min_distances[0, 0] == pytest.approx(0.0, abs=1e-5)
    peak = divmod(int(after.distance_maps[0, 0].argmin()), w)
    assert _cells(x, after.distance_maps)[0][peak]  # the prototype now fires on the breast
    assert after.similarities[0, 0] < before.similarities[0, 0]


def test_multiview_views_are_restricted_each_to_its_own_breast():
    cc, mlo = _breast_with_label(), _breast_with_label().flip(-1)  # the MLO breast on the right edge
    plain = _model("protopnet_multiview_resnet18", False, num_classes=3)
    restricted = _model("protopnet_multiview_resnet18", True, num_classes=3)
    restricted.load_state_dict(plain.state_dict())
    with torch.no_grad():
        raw, out = plain(cc, mlo).view_distance_maps, restricted(cc, mlo)
    for v, x in enumerate((cc, mlo)):
        cells = _cells(x, raw[:, v])  # (B, h, w)
        expected = raw[:, v].masked_fill(~cells[:, None], float("inf")).flatten(2).amin(dim=2)
        assert torch.allclose(out.view_min_distances[:, v], expected)
    assert torch.allclose(out.min_distances, out.view_min_distances.amin(dim=1))


def test_push_of_a_foreground_only_model_takes_no_background_patch():
    model = _model("braix_protopnet_pp_resnet18", True, num_classes=3)
    config = resolve_data_config(model, input_size=(1, SIZE, SIZE))
    data = load_dataset(
        "synthetic-mammo", "train", image_size=SIZE, num_samples=12, transform=build_transforms(config, train=False)
    )
    with torch.no_grad():  # every prototype starts as a corner (background) patch of image 0
        model.config.foreground_only = False
        model.head.prototypes.data[:] = model.latent(data[0]["image"][None])[0, :, 0, -1]
        model.config.foreground_only = True
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=collate_items)
    push_prototypes(model, loader, unique_source="per_class")  # no push foreground flag: the model's own rule
    items = {data[i]["id"]: data[i] for i in range(len(data))}
    for row in model.provenance:
        image = items[row["image_id"]]["image"][None]
        cells = foreground_cells(automatic_foreground(image), tuple(row["feature_size"]))[0]
        assert cells[tuple(row["feature_hw"])], row


def test_foreground_only_survives_save_and_load(tmp_path):
    model = _model("braix_protopnet_pp_resnet18", True, num_classes=3)
    model.save_pretrained(tmp_path / "m")
    loaded = protozoo.load(tmp_path / "m").eval()
    assert loaded.config.foreground_only is True
    x = _breast_with_label()
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
