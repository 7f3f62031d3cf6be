"""Tiny models on synthetic images, and a push done by hand (no dependence on protozoo.push)."""

from __future__ import annotations

from typing import Any

import torch

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.explanation import high_activation_box, upsample_maps

SIZE = 64


def tiny_model(spec: str = "synthetic-mammo", *, in_chans: int = 1, size: int = SIZE) -> tuple[Any, list[dict]]:
    """A 2-prototypes-per-class ProtoPNet on timm's ``test_resnet`` (stride 16) and 24 eval items.

    The items are transformed as the model expects, so they can be explained and pushed on.
    """
    raw = load_dataset(spec, "test", image_size=size, num_samples=24)
    model = protozoo.create_model(
        "protopnet_resnet18",
        backbone="test_resnet",
        num_classes=raw.num_classes,
        prototypes_per_class=2,
        prototype_dim=16,
        in_chans=in_chans,
        feature_stage=-2,
    ).eval()
    model.pretrained_cfg = model.pretrained_cfg.replace(
        input_size=(in_chans, size, size), label_names=tuple(raw.classes)
    )
    raw.transform = build_transforms(resolve_data_config(model), train=False)
    return model, [raw[i] for i in range(len(raw))]


def push_by_hand(model: Any, items: list[dict], cell: tuple[int, int] = (1, 2)) -> list[dict]:
    """Make each prototype a real latent patch of an item of its class and write its provenance row.

    Prototype p of class c copies the latent vector at ``cell`` (h, w) of the (p % 2)-th item of
    class c; the row's self-similarity map and high-activation box are computed as push does.
    """
    rows = []
    for p, c in enumerate(model.prototype_class.tolist()):
        item = [it for it in items if it["label"] == c][p % 2]
        image = item["image"][None]
        with torch.no_grad():
            z = model.latent(image)[0]  # (D, H, W)
            vector = z[:, cell[0], cell[1]]
            model.head.prototypes.data[p] = vector
            self_map = model.head.activation(model.head.distance(z[None], vector[None]))[0, 0]  # (H, W)
        heat = upsample_maps(self_map, tuple(image.shape[-2:]))
        rows.append(
            {
                "prototype": p,
                "class": c,
                "image_id": item["id"],
                "path": None,
                "label": c,
                "distance": 0.0,
                "feature_hw": list(cell),
                "feature_size": list(self_map.shape),
                "receptive_field_box": [0, 0, image.shape[-1], image.shape[-2]],
                "high_activation_box": list(high_activation_box(heat)),
                "self_similarity_map": self_map.tolist(),
            }
        )
    model.provenance = rows
    return rows
