"""Dataset spec strings (``scheme[:PATH]``) and the scheme table behind :func:`load_dataset`."""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset


class UnknownOptionError(TypeError, ValueError):
    """A dataset option the loader does not take (a TypeError, like a bad keyword; a ValueError, so the
    CLI reports it as the bad ``--data-option`` it is)."""


@dataclass(frozen=True)
class Scheme:
    """One spec scheme.

    Attributes:
        target: ``"module:Class"``, imported only when the scheme is used.
        path: ``"required"``, ``"none"`` or a default path used when the spec has none.
        doc: One-line description.
    """

    target: str
    path: str
    doc: str


SCHEMES: dict[str, Scheme] = {
    "synthetic-mammo": Scheme("protozoo.data.synthetic:SyntheticMammo", "none", "synthetic paired CC/MLO mammograms"),
    "synthetic-fundus": Scheme(
        "protozoo.data.synthetic:SyntheticFundus", "none", "synthetic fundus images with lesions"
    ),
    "synthetic-parts": Scheme(
        "protozoo.data.synthetic:SyntheticParts", "none", "synthetic objects with part keypoints"
    ),
    "folder": Scheme("protozoo.data.folder:ImageFolder", "required", "class-per-sub-folder images"),
    "cub": Scheme("protozoo.data.cub:CUB200", "required", "CUB-200-2011 birds with parts"),
    "cbis-ddsm": Scheme("protozoo.data.cbis_ddsm:CBISDDSM", "required", "CBIS-DDSM mammograms (CSVs + DICOM)"),
    "vindr-mammo": Scheme("protozoo.data.vindr:VinDrMammo", "required", "VinDr-Mammo mammograms (CSVs + DICOM)"),
    "amd": Scheme("protozoo.data.amd:AMDFundus", "required", "ADAM / iChallenge-AMD fundus with lesion masks"),
    "fashion-mnist": Scheme(
        "protozoo.data.fashion_mnist:FashionMNIST", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST idx files"
    ),
}


def list_dataset_schemes() -> list[str]:
    """Returns the known spec schemes, sorted."""
    return sorted(SCHEMES)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Splits ``"scheme[:PATH]"`` into (scheme, path or None) and checks the path rule.

    The first ``:`` separates the scheme, so paths may contain ``:``.

    Raises:
        ValueError: Unknown scheme (the message lists the known ones and the closest), a
            missing required path, or a path given to a scheme that takes none.
    """
    scheme, sep, path = spec.partition(":")
    scheme = scheme.strip().lower()
    if scheme not in SCHEMES:
        close = difflib.get_close_matches(scheme, SCHEMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset scheme {scheme!r} in spec {spec!r}; known: {list_dataset_schemes()}{hint}")
    rule = SCHEMES[scheme].path
    if rule == "required" and not (sep and path):
        raise ValueError(f"spec {spec!r} needs a path: '{scheme}:PATH'")
    if rule == "none" and sep:
        raise ValueError(f"spec {spec!r}: scheme {scheme!r} takes no path")
    if not (sep and path) and rule not in ("required", "none"):
        return scheme, rule
    return scheme, path if sep else None


def load_dataset(spec: str, split: str = "train", **options: Any) -> Dataset:
    """Builds the dataset named by a spec string.

    Specs: ``synthetic-mammo``, ``synthetic-fundus``, ``synthetic-parts``, ``folder:PATH``,
    ``cub:PATH``, ``cbis-ddsm:PATH``, ``vindr-mammo:PATH``, ``amd:PATH``,
    ``fashion-mnist[:PATH]`` (see ``docs/datasets.md``).

    Every dataset takes the core options :data:`protozoo.data.base.CORE_OPTIONS`: ``transform``,
    ``image_size`` (synthetic: generated at that side; files: resized to it), ``seed``,
    ``val_fraction`` (a seeded val split carved from train where the layout has none) and
    ``on_error``; and its own (``num_samples``, ``crop_to_bbox``, ``paired``...).

    Args:
        spec: ``scheme[:PATH]``.
        split: ``train``, ``val`` or ``test``.
        **options: Keyword options of the dataset class.

    Returns:
        The dataset (items are dicts; see :mod:`protozoo.data`).

    Raises:
        TypeError: An option the dataset does not take; the message lists the ones it takes.
    """
    scheme, path = parse_spec(spec)
    module_name, _, class_name = SCHEMES[scheme].target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if cls is None:
        raise ImportError(f"spec {spec!r} needs {module_name}.{class_name}, which does not exist")
    known = dataset_options(cls)
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownOptionError(
                f"unknown option {name!r} for dataset {scheme!r} ({class_name}); "
                f"known options: {', '.join(known)}{hint}"
            )
    return cls(split, **options) if path is None else cls(path, split, **options)


def dataset_options(cls: type) -> list[str]:
    """The keyword options a dataset class takes (its signature, less ``root`` and ``split``)."""
    parameters = inspect.signature(cls).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
