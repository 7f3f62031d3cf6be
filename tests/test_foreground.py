"""The foreground rule (#13): datasets give it exactly, an automatic rule finds it on other images, push
takes no background patch, and the losses can min-pool over the foreground only."""

from __future__ import annotations

import pytest
import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.data.collate import collate_items
from protozoo.family import list_families
from protozoo.foreground import automatic_foreground, foreground_cells, foreground_of, otsu_threshold
from protozoo.push import push_prototypes
from protozoo.train.losses import LossWeights, cluster_cost, own_class_mask, protopnet_loss, separation_cost

SIZE = 64


@pytest.mark.parametrize("spec", ["synthetic-mammo", "synthetic-fundus", "synthetic-parts"])
def test_synthetic_datasets_know_their_foreground(spec):
    data = load_dataset(spec, "train", image_size=SIZE, num_samples=6)
    for index in range(len(data)):
        item = data[index]
        fg = item["foreground"]
        assert fg.shape == (1, SIZE, SIZE) and 0 < fg.mean() < 1 and set(fg.unique().tolist()) <= {0.0, 1.0}
        image = item["image"].mean(dim=0)
        if spec != "synthetic-parts":  # the breast / the fundus disc: every lesion on it, black around it
            assert (fg[0][item["mask"].amax(dim=0) > 0.5] > 0.5).all()
            assert image[fg[0] < 0.5].mean() < 0.1 < image[fg[0] > 0.5].mean()
        for view in item.get("views", {}).values():
            assert view["foreground"].shape == (1, SIZE, SIZE)


def test_otsu_threshold_splits_two_levels():
    values = torch.cat([torch.full((300,), 0.1), torch.full((100,), 0.8)]).numpy()
    assert 0.1 <= otsu_threshold(values) < 0.8


def test_automatic_rule_keeps_the_tissue_not_a_burned_in_label():
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    image = torch.full((SIZE, SIZE), 0.05)
    tissue = ((xx - 10) ** 2 / 30**2 + (yy - 32) ** 2 / 24**2) <= 1  # a breast on the left edge
    image[tissue] = 0.5 + 0.1 * torch.rand(int(tissue.sum()))
    image[3:8, 50:61] = 1.0  # a bright text label in the corner
    found = automatic_foreground(image[None])
    assert torch.equal(found, tissue)
    normalised = (image[None].repeat(3, 1, 1) - 0.449) / 0.226  # any positive affine change of intensity
    assert torch.equal(automatic_foreground(normalised), tissue)
    assert torch.equal(foreground_of({"image": image[None, None]})[0], tissue)  # no key: the rule


def test_foreground_cells_are_half_foreground_and_never_none():
    fg = torch.zeros(2, 8, 8, dtype=torch.bool)
    fg[0, :4, :2] = True  # half of cell (0, 0) of a 2x2 grid... plus nothing else
    cells = foreground_cells(fg, (2, 2))
    assert cells[0].tolist() == [[True, False], [False, False]] and cells[1].all()  # an empty image keeps all


def _tiny_braix():
    torch.manual_seed(0)
    return protozoo.create_model(
        "braix_protopnet_pp_resnet18", num_classes=3, prototypes_per_class=2, prototype_dim=16, feature_stage=2
    ).eval()


def _mammo(model, n=12):
    config = resolve_data_config(model, input_size=(1, SIZE, SIZE))
    return load_dataset(
        "synthetic-mammo", "train", image_size=SIZE, num_samples=n, transform=build_transforms(config, train=False)
    )


def _background_prototypes(model, data):
    """Prototypes whose source cell is less than half breast."""
    items = {data[i]["id"]: data[i] for i in range(len(data))}
    bad = []
    for row in model.provenance:
        fg = items[row["image_id"]]["foreground"]
        cells = foreground_cells(fg > 0.5, tuple(row["feature_size"]))[0]
        if not cells[tuple(row["feature_hw"])]:
            bad.append(row["prototype"])
    return bad


def _background_seeded(data):
    """A tiny model whose prototypes all start as a background patch (a corner cell of image 0)."""
    model = _tiny_braix()
    with torch.no_grad():
        corner = model.latent(data[0]["image"][None])[0, :, 0, -1]  # (D,)
        model.head.prototypes.data[:] = corner
    return model


def test_push_takes_no_background_patch():
    data = _mammo(_tiny_braix())
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=collate_items)
    model = _background_seeded(data)
    push_prototypes(model, loader, unique_source="per_class")
    assert _background_prototypes(model, data)  # the check can fail: without the rule, background patches win
    model = _background_seeded(data)
    push_prototypes(model, loader, unique_source="per_class", foreground=True)
    assert _background_prototypes(model, data) == []
    assert len({row["image_id"] for row in model.provenance}) == model.num_prototypes  # per_class still holds


def test_medical_recipes_push_from_the_foreground():
    families = list_families()
    for name in ("braix_protopnet_pp", "protopnet_multiview", "protopnet_lesion"):
        assert families[name].default_recipe().push_foreground
    assert not families["protopnet"].default_recipe().push_foreground


def test_foreground_pooling_min_pools_over_the_breast_only():
    model = _tiny_braix()
    batch = collate_items([_mammo(model, n=4)[i] for i in range(4)])
    output = model(batch["image"])
    weights = LossWeights(l1=0, foreground_pooling=True)
    _, terms = protopnet_loss(model, output, batch, weights)
    cells = foreground_cells(batch["foreground"][:, 0] > 0.5, tuple(output.distance_maps.shape[-2:]))
    pooled = torch.stack([output.distance_maps[b][:, cells[b]].amin(dim=1) for b in range(4)])  # (B, P)
    own = own_class_mask(model.head.prototype_identity, batch["label"])
    assert terms["cluster"] == pytest.approx(cluster_cost(pooled, own).item(), rel=1e-6)
    _, plain = protopnet_loss(model, output, batch, LossWeights(l1=0))
    assert plain["cluster"] <= terms["cluster"]  # the minimum over fewer cells
    assert terms["separation"] == pytest.approx(separation_cost(pooled, own).item(), rel=1e-6)
    # foreground_separation=False: the cluster cost still from the breast, the separation from every cell
    _, split = protopnet_loss(
        model, output, batch, LossWeights(l1=0, foreground_pooling=True, foreground_separation=False)
    )
    assert split["cluster"] == terms["cluster"]
    assert split["separation"] == pytest.approx(plain["separation"], rel=1e-6)


def test_push_takes_lesion_patches_where_the_data_has_masks():
    data = _mammo(_tiny_braix(), n=24)
    loader = torch.utils.data.DataLoader(data, batch_size=6, collate_fn=collate_items)
    model = _background_seeded(data)
    push_prototypes(model, loader, unique_source="per_class", foreground=True, lesions=True)
    items = {data[i]["id"]: data[i] for i in range(len(data))}
    for row in model.provenance:
        mask = items[row["image_id"]]["mask"]
        if row["class"] == 0:  # normal: no lesion, any breast cell
            continue
        share = torch.nn.functional.adaptive_avg_pool2d(mask[None], tuple(row["feature_size"]))[0, 0]
        assert share[tuple(row["feature_hw"])] > 0, row  # on the mass


def test_lesion_pooling_pulls_prototypes_to_the_findings():
    """Cluster cost with lesion_pooling: on lesion-bearing images the minimum over the lesion cells only."""
    from protozoo.foreground import lesion_cells

    model = _tiny_braix()
    batch = collate_items([_mammo(model, n=8)[i] for i in range(8)])
    output = model(batch["image"])
    _, terms = protopnet_loss(model, output, batch, LossWeights(l1=0, lesion_pooling=True))
    maps = output.distance_maps
    cells = lesion_cells(batch, tuple(maps.shape[-2:]))
    has = (batch["mask"].flatten(1) > 0.5).any(dim=1)
    assert has.any() and (~has).any()
    pooled = torch.stack([maps[b][:, cells[b]].amin(dim=1) for b in range(8)])  # (B, P)
    assert torch.equal(pooled[~has], maps[~has].flatten(2).amin(dim=2))  # no lesion: every cell
    own = own_class_mask(model.head.prototype_identity, batch["label"])
    assert terms["cluster"] == pytest.approx(cluster_cost(pooled, own).item(), rel=1e-6)


def test_lesion_head_prototypes_come_from_their_own_lesion_type():
    """A lesion head's prototype of type l is a patch of an l lesion, not of another finding on the
    same image: seeded on a haemorrhage cell of a drusen-bearing eye, the drusen prototype is still
    pushed onto drusen (without the lesion rule it stays on the haemorrhage, distance 0)."""
    from protozoo.foreground import lesion_cells

    torch.manual_seed(0)
    model = protozoo.create_model(
        "protopnet_lesion_resnet18", prototypes_per_class=1, prototype_dim=8, feature_stage=2, pretrained_backbone=False
    ).eval()
    data = load_dataset(
        "synthetic-fundus",
        "train",
        image_size=SIZE,
        num_samples=48,
        lesion_size=2.0,
        transform=build_transforms(resolve_data_config(model), train=False),
    )
    loader = torch.utils.data.DataLoader(data, batch_size=6, collate_fn=collate_items)
    drusen, haemorrhage = model.lesion_names.index("drusen"), model.lesion_names.index("haemorrhage")
    both = next(data[i] for i in range(len(data)) if data[i]["lesions"][drusen] and data[i]["lesions"][haemorrhage])
    with torch.no_grad():
        z = model.latent(both["image"][None])  # (1, D, h, w)
        cells = lesion_cells(collate_items([both]), tuple(z.shape[2:]), per_type=True)[0]  # (L, h, w)
        seed_cell = (cells[haemorrhage] & ~cells[drusen]).nonzero()[0]
        seeded = model.head.prototypes.detach().clone()
        seeded[drusen] = z[0, :, seed_cell[0], seed_cell[1]].reshape(seeded[drusen].shape)

    def pushed_cells(**options):
        with torch.no_grad():
            model.head.prototypes.copy_(seeded)
        push_prototypes(model, loader, foreground=True, **options)
        return {row["class"]: row for row in model.provenance}

    rows = pushed_cells()
    assert rows[drusen]["image_id"] == both["id"] and rows[drusen]["feature_hw"] == seed_cell.tolist()
    items = {data[i]["id"]: data[i] for i in range(len(data))}
    for lesion, row in pushed_cells(lesions=True).items():
        mask = items[row["image_id"]]["mask"][lesion]  # (H, W): the prototype's own lesion type
        share = torch.nn.functional.adaptive_avg_pool2d(mask[None].float(), tuple(row["feature_size"]))[0]
        assert share[tuple(row["feature_hw"])] > 0, (model.lesion_names[lesion], row)
