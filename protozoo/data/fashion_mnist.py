"""Fashion-MNIST from its idx files (gzipped or not)."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from protozoo.data.folder import (
    CorruptFileError,
    DatasetLayoutError,
    Item,
    ItemDataset,
    OnError,
    Transform,
    check_label,
)

#: Where the Debian package ``dataset-fashion-mnist`` installs the files.
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
LAYOUT = "PATH/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def read_idx(path: Path, *, magic: int) -> np.ndarray:
    """Reads an idx file (big-endian magic, big-endian uint32 dims, uint8 data).

    Args:
        path: ``.gz`` or raw idx file.
        magic: Expected magic number (2051 images, 2049 labels).

    Returns:
        uint8 array of shape (N, 28, 28) for images, (N,) for labels.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        found = int.from_bytes(data[:4], "big")
        if found != magic:
            raise ValueError(f"magic number {found}, expected {magic}")
        ndim = data[3]
        dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, EOFError, ValueError) as e:
        raise CorruptFileError(path, e) from e


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetLayoutError(f"missing {root / stem}[.gz]; expected layout: {LAYOUT}")


class FashionMNIST(ItemDataset):
    """Fashion-MNIST: 28x28 grayscale, 10 classes, 60k train / 10k test.

    Items: ``image`` (1, 28, 28) float32 in [0, 1] (``image_size``: resized), ``label``, ``id``
    (``"train/17"``). 3-channel replication is done by the transform
    (:func:`protozoo.data.build_transforms` with ``input_size=(3, H, W)``).

    Args:
        root: Folder with the idx files (default: the Debian package location).
        split: ``train``, ``test``, or ``val`` (carved from train, needs ``val_fraction``).
        transform: Callable over the item dict.
        image_size: Side or ``(H, W)`` every image is resized to (None: 28 x 28).
        seed: Seed of the val carve-out.
        val_fraction: Fraction of train used as val.
        on_error: Accepted for the common signature; idx files are read eagerly.
    """

    classes = CLASSES

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        split: str = "train",
        *,
        transform: Transform | None = None,
        image_size: int | Sequence[int] | None = None,
        seed: int = 0,
        val_fraction: float = 0.0,
        on_error: OnError = "raise",
    ) -> None:
        super().__init__(
            split, transform=transform, image_size=image_size, seed=seed, val_fraction=val_fraction, on_error=on_error
        )
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"missing {self.root}; expected layout: {LAYOUT}")
        official = "test" if split == "test" else "train"
        prefix = "t10k" if official == "test" else "train"
        images_path = _find(self.root, f"{prefix}-images-idx3-ubyte")
        labels_path = _find(self.root, f"{prefix}-labels-idx1-ubyte")
        images = read_idx(images_path, magic=IMAGES_MAGIC)  # (N, 28, 28)
        labels = read_idx(labels_path, magic=LABELS_MAGIC)  # (N,)
        if len(images) != len(labels):
            raise ValueError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
        for i in np.flatnonzero(labels >= len(CLASSES))[:1]:
            check_label(int(labels[i]), num_classes=len(CLASSES), where=f"{labels_path} entry {i}")
        keep = [i for i in range(len(labels)) if self.in_split(f"{prefix}/{i}", official)]
        self.prefix = prefix
        self.indices = keep
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Item:
        """Returns one 28x28 image."""
        i = self.indices[index]
        image = torch.from_numpy(self.images[i].astype(np.float32) / 255.0)[None]  # (1, 28, 28)
        return {"image": image, "label": int(self.labels[i]), "id": f"{self.prefix}/{i}"}
