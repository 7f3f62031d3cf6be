"""Shortcut learning made visible: the test images with the class-coding tag of their true class
drawn (as on the training images), the tag as their mask; and the prototypes whose push source
boxes lie on the tag of their source image."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from protozoo.data.synthetic._common import draw_marker, marker_box


class TaggedTest(Dataset):
    """Raw (untransformed) synthetic test items with the training tag of their label drawn and
    ``mask`` (1, H, W) replaced by the tag's box, then ``transform`` (which moves the mask with the
    image, so the tag's mask is wherever the transform puts the tag).

    Args:
        raw: A synthetic dataset split without transform and without its own tag (``shortcut=0``).
        transform: The eval transform the models are scored with.
    """

    def __init__(self, raw: Any, transform: Any):
        self.raw, self.transform = raw, transform
        self.classes = list(raw.classes)

    def __len__(self) -> int:
        return len(self.raw)

    def __getattr__(self, name: str) -> Any:  # lesion_names, image_size...: the raw split's
        if name == "raw":
            raise AttributeError(name)
        return getattr(self.raw, name)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.raw[index])
        image = item["image"].clone().numpy()  # (C, H, W) in [0, 1]
        x0, y0, x1, y1 = marker_box(int(item["label"]), len(self.classes), image.shape[-1])
        draw_marker(image, (x0, y0, x1, y1))
        tag = torch.zeros(1, *image.shape[-2:])
        tag[:, y0:y1, x0:x1] = 1.0
        item |= {"image": torch.from_numpy(image), "mask": tag, "shortcut_box": torch.tensor([x0, y0, x1, y1])}
        return self.transform(item) if self.transform is not None else item


def prototypes_on_tag(provenance: list[dict[str, Any]], push_data: Dataset, box: str = "high_activation_box") -> float:
    """Share of prototypes whose push source ``box`` (pixel box of the pushed image) holds the centre
    of the tag drawn on that source image (0 when no source image carried a tag).

    Args:
        provenance: ``model.provenance`` after a push (``image_id`` = the dataset's sample id).
        push_data: The dataset pushed from (its ``sample_id(i)`` names item i; ``shortcut_box`` per item).
        box: Which provenance box: ``high_activation_box`` (default) or ``receptive_field_box``.
    """
    if not provenance:
        raise ValueError("the model has no push provenance: the benchmark's ProtoPNet pushes after its last epoch")
    index_of = {push_data.sample_id(i): i for i in range(len(push_data))}
    on = 0
    for record in provenance:
        tag = push_data[index_of[record["image_id"]]]["shortcut_box"].tolist()  # (x0, y0, x1, y1), -1 without tag
        if tag[0] < 0:
            continue
        cx, cy = (tag[0] + tag[2]) / 2, (tag[1] + tag[3]) / 2
        x0, y0, x1, y1 = record[box]
        on += int(x0 <= cx <= x1 and y0 <= cy <= y1)
    return on / len(provenance)
