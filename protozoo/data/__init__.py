"""Datasets and transforms.

An item is a dict: ``image`` (C, H, W) float32, ``label`` (int or multi-hot tensor) and, where
the dataset has them, ``parts`` (K, 2) pixel (x, y), ``parts_visible`` (K,) bool, ``mask``
(L, H, W), ``views`` ({"cc": item, "mlo": item}), ``id``, ``path``. Datasets expose ``classes``
and ``num_classes``; a transform maps an item dict to an item dict.
"""

from protozoo.data.amd import AMDFundus
from protozoo.data.cbis_ddsm import CBISDDSM
from protozoo.data.cub import CUB200
from protozoo.data.dicom import read_dicom
from protozoo.data.fashion_mnist import FashionMNIST
from protozoo.data.folder import CorruptFileError, DatasetLayoutError, ImageFolder, read_image
from protozoo.data.specs import list_dataset_schemes, load_dataset, parse_spec
from protozoo.data.transforms import AffineAug, build_transforms, resolve_data_config
from protozoo.data.vindr import VinDrMammo

__all__ = [
    "AMDFundus",
    "AffineAug",
    "CBISDDSM",
    "CUB200",
    "CorruptFileError",
    "DatasetLayoutError",
    "FashionMNIST",
    "ImageFolder",
    "VinDrMammo",
    "build_transforms",
    "list_dataset_schemes",
    "load_dataset",
    "parse_spec",
    "read_dicom",
    "read_image",
    "resolve_data_config",
]
