"""Model files: ``config.json`` + ``model.safetensors`` (+ ``prototypes.json``), locally and on the Hub.

Saving, loading a folder, finding a registered model's weight folder (the zoo's ``weights/``, an
explicit file, a Hub snapshot from huggingface_hub's cache). Names (aliases, ``arch.tag``) are
resolved by :func:`protozoo.builder.load`, which builds on this module.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protozoo import registry
from protozoo.pretrained import PretrainedCfg
from protozoo.serialization import WeightFileError, load_strict, read_state_dict, write_json, write_state_dict

if TYPE_CHECKING:
    from protozoo.models._base import ProtoModel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PROTOTYPES_NAME = "prototypes.json"
FORMAT_VERSION = 1


class UntrainedWarning(UserWarning):
    """A model was loaded whose head (or backbone) has no trained weights."""


def weights_root() -> Path:
    """The zoo's ``weights/`` folder: ``$PROTOZOO_WEIGHTS`` or ``weights/`` beside the package."""
    return Path(os.environ.get("PROTOZOO_WEIGHTS", Path(__file__).resolve().parents[1] / "weights"))


def save_pretrained(model: ProtoModel, directory: str | Path) -> Path:
    """Write a model's files into ``directory`` (created if needed) and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_state_dict(model.state_dict(), directory / WEIGHTS_NAME, metadata={"format": "pt"})
    config = {
        "format_version": FORMAT_VERSION,
        "architecture": model.config.arch,
        "model_args": model.model_args(),
        "pretrained_cfg": model.pretrained_cfg.to_dict(),
    }
    write_json(config, directory / CONFIG_NAME)
    if model.provenance is not None:
        write_json(model.provenance, directory / PROTOTYPES_NAME)
    return directory


def load_pretrained(directory: str | Path, **overrides: Any) -> ProtoModel:
    """Rebuild a saved model with every weight key checked.

    Args:
        directory: A folder written by :func:`save_pretrained`.
        **overrides: Architecture arguments to change. A different ``num_classes`` re-initialises
            only the class-dependent parts (prototypes, their classes, the last layer) and warns.

    Returns:
        The model in eval mode.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} not found: a protozoo model folder holds {CONFIG_NAME} and {WEIGHTS_NAME} "
                "(written by model.save_pretrained)"
            )
    try:
        config = json.loads(config_path.read_text())
        arch, model_args = config["architecture"], config["model_args"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise WeightFileError(f"{str(config_path)!r} is not a protozoo config ({err!r})") from err
    model = registry.get_entrypoint(arch)(**{**model_args, **overrides})
    state_dict = read_state_dict(weights_path)
    pretrained_cfg = PretrainedCfg.from_dict(config.get("pretrained_cfg", {"architecture": arch}))
    reinit = "num_classes" in overrides and overrides["num_classes"] != model_args.get("num_classes")
    if reinit:
        kept = {k: v for k, v in state_dict.items() if k not in model.class_dependent}
        fresh = model.state_dict()
        load_strict(model, {**kept, **{k: fresh[k] for k in model.class_dependent}}, str(weights_path))
        warnings.warn(
            f"loaded {arch} with num_classes={overrides['num_classes']} (saved: {model_args.get('num_classes')}); "
            f"re-initialised the class-dependent parts: {', '.join(model.class_dependent)}",
            stacklevel=2,
        )
        pretrained_cfg = pretrained_cfg.replace(label_names=None)
    else:
        load_strict(model, state_dict, str(weights_path))
        prototypes_path = directory / PROTOTYPES_NAME
        if prototypes_path.is_file():
            model.provenance = json.loads(prototypes_path.read_text())
    model.pretrained_cfg = pretrained_cfg
    return model.eval()


def locate_weights(cfg: PretrainedCfg) -> Path:
    """The local folder holding the weights of a pretrained configuration."""
    if cfg.file:
        return Path(cfg.file)
    if cfg.weights_dir:
        folder = weights_root() / cfg.weights_dir
        if folder.is_dir():
            return folder
        if not cfg.hf_hub_id:
            raise FileNotFoundError(f"weights of {cfg.name} should be in {str(folder)!r}, which does not exist")
    return hub_snapshot(cfg.hf_hub_id)


def load_registered(cfg: PretrainedCfg, **overrides: Any) -> ProtoModel:
    """Load the trained weights a registered configuration points at; the model keeps that pointer."""
    model = load_pretrained(locate_weights(cfg), **overrides)
    model.pretrained_cfg = model.pretrained_cfg.replace(
        architecture=cfg.architecture, tag=cfg.tag, weights_dir=cfg.weights_dir, hf_hub_id=cfg.hf_hub_id, file=cfg.file
    )
    return model


def hub_snapshot(repo: str, cache_dir: str | Path | None = None) -> Path:
    """The local snapshot folder of a Hub repo (``org/repo[@revision]``), from the cache when offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id, _, revision = repo.partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None, cache_dir=cache_dir))
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"Hub repo {repo_id!r} is not in the local Hugging Face cache and the Hub cannot be reached; "
            f"download it once on a connected machine (huggingface-cli download {repo_id}) or load a local folder"
        ) from err


def push_to_hub(
    model: ProtoModel,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload protozoo model",
    api: Any = None,
) -> str:
    """Save a model to a temporary folder and upload it as a Hub model repo.

    Args:
        model: The model.
        repo_id: ``org/repo`` (only ``[\\w.-]`` characters: an alias like ``braix-protopnet++`` is not one).
        token: Hub token (default: the logged-in one).
        private: Create the repo private.
        commit_message: The commit message.
        api: A ``huggingface_hub.HfApi`` (or a stand-in with ``create_repo``/``upload_folder``).

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
