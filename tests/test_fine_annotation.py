"""IAIA-BL's fine-annotation loss (Barnett et al. 2021, #13): its value is the paper's definition, and
training with it lowers prototype activation outside the lesions."""

from __future__ import annotations

import pytest
import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.data.collate import collate_items
from protozoo.family import family_of
from protozoo.train.losses import LossWeights, fine_annotation_cost

SIZE = 64


def test_cost_is_activation_outside_own_lesion_and_anywhere_for_other_classes():
    act = torch.rand(3, 2, 4, 4)  # (B, P, h, w), at mask size
    masks = torch.zeros(3, 1, 4, 4)
    masks[0, 0, :2, :2] = 1  # image 0: a lesion; image 1: a lesion elsewhere; image 2: none (normal)
    masks[1, 0, 2:, 2:] = 1
    own = torch.tensor([[True, False], [False, True], [True, False]])
    rms = lambda x: (x.pow(2).mean() + 1e-8).sqrt()  # noqa: E731
    outside = 1 - masks[:, 0]
    expected = (
        rms(act[0, 0] * outside[0])
        + rms(act[0, 1])  # own outside its lesion; the other anywhere
        + rms(act[1, 0])
        + rms(act[1, 1] * outside[1])
        + rms(act[2, 1])
    ) / 6  # a normal image: its own prototype is not penalised
    assert fine_annotation_cost(act, masks, own).item() == pytest.approx(expected.item(), rel=1e-5)
    inside_only = act * masks  # own-class activation only inside the lesion, other classes silent
    silent = torch.where(own[..., None, None], inside_only, torch.zeros_like(act))
    silent[2] = 0
    assert fine_annotation_cost(silent, masks, own).item() == pytest.approx(1e-4 * 5 / 6, abs=1e-6)


def _activation(model, batch) -> tuple[float, float]:
    """Mean own-class prototype activation outside and inside the lesion, on the lesion-bearing images."""
    with torch.no_grad():
        act = model.similarity_maps(batch["image"])  # (B, P, h, w)
        act = torch.nn.functional.interpolate(act, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    lesion = batch["mask"][:, 0] > 0.5  # (B, H, W)
    own = model.head.prototype_identity[:, batch["label"]].T.bool() & lesion.flatten(1).any(dim=1)[:, None]  # (B, P)
    b, p = own.nonzero(as_tuple=True)
    maps, where = act[b, p], lesion[b]  # (N, H, W) each
    return maps[~where].mean().item(), maps[where].mean().item()


def _train(weight: float, batch) -> torch.nn.Module:
    torch.manual_seed(0)
    model = protozoo.create_model(
        "braix_protopnet_pp_resnet18", num_classes=3, prototypes_per_class=1, prototype_dim=16, feature_stage=2
    )
    loss_fn = family_of(model).resolved("loss")
    weights = LossWeights(fine_annotation=weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(25):
        output = model(batch["image"])
        loss, terms = loss_fn(model, output, batch, weights, "joint")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert ("fine_annotation" in terms) == (weight > 0)
    return model.eval()


def test_training_with_it_lowers_activation_outside_the_lesions():
    model = protozoo.create_model("braix_protopnet_pp_resnet18", num_classes=3, feature_stage=2)
    config = resolve_data_config(model, input_size=(1, SIZE, SIZE))
    data = load_dataset(
        "synthetic-mammo",
        "train",
        image_size=SIZE,
        num_samples=16,
        lesion_size=2.0,
        transform=build_transforms(config, train=False),
    )
    batch = collate_items([data[i] for i in range(len(data))])
    assert (batch["mask"].flatten(1).amax(dim=1) > 0).sum() >= 6  # lesion-bearing images to score
    off, on = _train(0.0, batch), _train(1.0, batch)
    (off_out, _), (on_out, _) = _activation(off, batch), _activation(on, batch)
    assert on_out < 0.5 * off_out  # own-class activation outside the lesions falls
    cost = []
    for model in (off, on):
        with torch.no_grad():
            output = model(batch["image"])
            own = model.head.prototype_identity[:, batch["label"]].T.bool()
            cost.append(fine_annotation_cost(model.head.activation(output.distance_maps), batch["mask"], own).item())
    assert cost[1] < 0.5 * cost[0]  # and other classes' activation anywhere with it
