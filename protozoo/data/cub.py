"""CUB-200-2011 birds with bounding boxes and 15 part keypoints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from protozoo.data.errors import bad_line
from protozoo.data.folder import (
    DatasetLayoutError,
    Item,
    ItemDataset,
    OnError,
    Transform,
    check_label,
    read_image,
    require,
)
from protozoo.pretrained import adapt_image_channels

LAYOUT = (
    "PATH/{images.txt, image_class_labels.txt, train_test_split.txt, bounding_boxes.txt, classes.txt, "
    "parts/parts.txt, parts/part_locs.txt, images/<class folder>/<file>.jpg} "
    "(PATH may also be the folder containing CUB_200_2011/)"
)


def _table(path: Path, numbers: int = 0) -> dict[int, list[str]]:
    """Reads a whitespace-separated ``<id> <fields...>`` file into {id: fields}; with ``numbers``, each
    line must hold that many numeric fields. A bad line is an error naming the file and the line."""
    require(path, layout=LAYOUT)
    rows: dict[int, list[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            key, *fields = line.split()
            if (
                not key.isdigit()
                or not fields
                or (numbers and (len(fields) != numbers or not all(map(_is_number, fields))))
            ):
                raise bad_line(
                    path, n, line, f"'<integer id> <{numbers or 'one or more'} {'numbers' if numbers else 'fields'}>'"
                )
            rows[int(key)] = fields
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CUB200(ItemDataset):
    """CUB-200-2011 (Wah et al. 2011).

    Items: ``image`` (3, H, W), ``label`` (0-based class), ``parts`` (15, 2) pixel (x, y) in the
    returned image, ``parts_visible`` (15,) bool, ``id`` (CUB image id as a string), ``path``.

    Part ``k`` (0-based) is CUB part id ``k + 1`` (see ``parts/parts.txt``; names in
    ``part_names``). Coordinates are used as given in ``part_locs.txt`` (pixel units).
    With ``crop_to_bbox`` the image is cropped to its bounding box (rounded outward to whole
    pixels), keypoints are shifted into the crop, and parts falling outside the crop become
    invisible, as Huang et al. (2023) do.

    Args:
        root: ``CUB_200_2011`` folder (or its parent).
        split: ``train`` / ``test`` (``train_test_split.txt``), or ``val`` carved from train.
        transform: Callable over the item dict.
        image_size: Side or ``(H, W)`` every image (after ``crop_to_bbox``) is resized to, parts
            following (None: as stored).
        seed: Seed of the val carve-out.
        val_fraction: Fraction of train used as val (hashed on the image id).
        on_error: ``"raise"`` or ``"skip"`` corrupt images.
        crop_to_bbox: Crop each image to its bounding box.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transform: Transform | None = None,
        image_size: int | Sequence[int] | None = None,
        seed: int = 0,
        val_fraction: float = 0.0,
        on_error: OnError = "raise",
        crop_to_bbox: bool = False,
    ) -> None:
        super().__init__(
            split, transform=transform, image_size=image_size, seed=seed, val_fraction=val_fraction, on_error=on_error
        )
        root = Path(root)
        if not (root / "images.txt").exists() and (root / "CUB_200_2011" / "images.txt").exists():
            root = root / "CUB_200_2011"
        self.root = require(root, layout=LAYOUT)
        self.crop_to_bbox = crop_to_bbox
        classes = _table(root / "classes.txt")
        self.classes = [classes[k][0] for k in sorted(classes)]
        parts = _table(root / "parts" / "parts.txt")
        self.part_names = [" ".join(parts[k]) for k in sorted(parts)]
        images = _table(root / "images.txt")
        labels = _table(root / "image_class_labels.txt")
        is_train = _table(root / "train_test_split.txt")
        boxes = _table(root / "bounding_boxes.txt", numbers=4)
        part_locs_path = require(root / "parts" / "part_locs.txt", layout=LAYOUT)
        locs: dict[int, torch.Tensor] = {}
        num_parts = len(self.part_names)
        for n, line in enumerate(part_locs_path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                image_id, part_id, x, y, visible = line.split()[:5]
                part = int(part_id) - 1
                if not 0 <= part < num_parts:
                    raise ValueError(part_id)
                values = torch.tensor([float(x), float(y), float(visible)])
            except ValueError:
                raise bad_line(
                    part_locs_path, n, line, f"'<image id> <part id 1..{num_parts}> <x> <y> <visible>'"
                ) from None
            locs.setdefault(int(image_id), torch.zeros(num_parts, 3))[part] = values  # (K, [x, y, visible])
        self.samples: list[tuple[int, Path, int]] = []
        for image_id in sorted(images):
            for table, name in ((labels, "image_class_labels.txt"), (is_train, "train_test_split.txt")):
                if image_id not in table:
                    raise DatasetLayoutError(
                        f"image id {image_id} missing from {root / name}; expected layout: {LAYOUT}"
                    )
            where = f"{root / 'image_class_labels.txt'} image {image_id}"
            label = check_label(int(labels[image_id][0]) - 1, num_classes=len(self.classes), where=where)
            official = "train" if is_train[image_id][0] == "1" else "test"
            if self.in_split(str(image_id), official):
                self.samples.append((image_id, root / "images" / images[image_id][0], label))
        self.boxes = {k: [float(v) for v in fields] for k, fields in boxes.items()}
        self.locs = locs
        self.num_parts = num_parts

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Item:
        """Loads one bird with parts (optionally cropped to its bounding box)."""
        image_id, path, label = self.samples[index]
        require(path, layout=LAYOUT)
        image = read_image(path)  # (C, H, W)
        if image.shape[0] != 3:  # a few CUB images are grayscale
            image = adapt_image_channels(image, 3).clone()
        loc = self.locs.get(image_id, torch.zeros(self.num_parts, 3))  # (K, 3)
        parts, visible = loc[:, :2].clone(), loc[:, 2] > 0  # (K, 2), (K,)
        if self.crop_to_bbox:
            x, y, w, h = self.boxes[image_id]
            _, height, width = image.shape
            left, top = max(0, math.floor(x)), max(0, math.floor(y))
            right, bottom = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
            image = image[:, top:bottom, left:right]
            parts -= torch.tensor([left, top], dtype=parts.dtype)
            inside = (parts >= -0.5).all(1) & (parts[:, 0] < right - left - 0.5) & (parts[:, 1] < bottom - top - 0.5)
            visible &= inside
        return {
            "image": image,
            "label": label,
            "parts": parts,
            "parts_visible": visible,
            "id": str(image_id),
            "path": str(path),
        }
