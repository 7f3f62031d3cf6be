"""Datasets and transforms.

An item is a dict: ``image`` (C, H, W) float32, ``label`` (int or multi-hot tensor) and, where
the dataset has them, ``parts`` (K, 2) pixel (x, y), ``parts_visible`` (K,) bool, ``mask``
(L, H, W), ``views`` ({"cc": item, "mlo": item}), ``id``, ``path``. Datasets expose ``classes``
and ``num_classes``; a transform maps an item dict to an item dict.
"""

import importlib
from typing import Any

# name -> defining submodule; imported on first use, so that reading a PNG never loads pydicom and
# ``import protozoo`` loads no dataset module.
_EXPORTS = {
    "AMDFundus": "amd",
    "AffineAug": "transforms",
    "CBISDDSM": "cbis_ddsm",
    "CUB200": "cub",
    "CorruptFileError": "errors",
    "DatasetLayoutError": "errors",
    "FashionMNIST": "fashion_mnist",
    "ImageFolder": "folder",
    "ItemDataset": "base",
    "VinDrMammo": "vindr",
    "build_transforms": "transforms",
    "label_map": "labels",
    "list_dataset_schemes": "specs",
    "load_dataset": "specs",
    "parse_spec": "specs",
    "read_dicom": "dicom",
    "read_image": "folder",
    "resolve_data_config": "transforms",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"protozoo.data.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'protozoo.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "AMDFundus",
    "AffineAug",
    "CBISDDSM",
    "CUB200",
    "CorruptFileError",
    "DatasetLayoutError",
    "FashionMNIST",
    "ImageFolder",
    "ItemDataset",
    "VinDrMammo",
    "build_transforms",
    "list_dataset_schemes",
    "load_dataset",
    "parse_spec",
    "read_dicom",
    "read_image",
    "resolve_data_config",
]
