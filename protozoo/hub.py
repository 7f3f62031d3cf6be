"""Model files: ``config.json`` + ``model.safetensors`` (+ ``prototypes.json``), locally and on the Hub.

Saving, loading a folder, finding a registered model's weight folder (the zoo's ``weights/``, an
explicit file, a Hub snapshot from huggingface_hub's cache). Names (aliases, ``arch.tag``) are
resolved by :func:`protozoo.builder.load`, which builds on this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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
CHECKSUM_KEY = "weights_sha256"
# The only timm arguments a config.json may pass to the backbone: regularisation rates, numbers.
# Anything else (checkpoint_path, pretrained, pretrained_cfg_overlay, act_layer, norm_layer...)
# could make timm open a file, reach the network or import a class a third party named.
SAFE_BACKBONE_KWARGS = frozenset({"drop_rate", "drop_path_rate", "drop_block_rate", "attn_drop_rate",
                                  "proj_drop_rate", "pos_drop_rate", "patch_drop_rate"})
# Integer architecture arguments and their least value.
POSITIVE_INTS = {"num_classes": 1, "prototypes_per_class": 1, "prototype_dim": 1, "in_chans": 1}
# The most head parameters (prototypes P x D plus the last layer P x K) a model may have: 2**30
# floats is 4 GiB, far past any prototype network; a typo such as num_classes=10**5 is refused
# here instead of failing (or swapping) in the allocation.
MAX_HEAD_PARAMETERS = 2**30


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
        CHECKSUM_KEY: file_sha256(directory / WEIGHTS_NAME),
    }
    write_json(config, directory / CONFIG_NAME)
    if model.provenance is not None:
        write_json(model.provenance, directory / PROTOTYPES_NAME)
    else:  # a folder that held a pushed model must not lend its provenance to this one
        (directory / PROTOTYPES_NAME).unlink(missing_ok=True)
    return directory


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model_args(arch: str, model_args: Any, source: str, *, trusted: bool = False) -> dict[str, Any]:
    """Check architecture arguments before anything is built from them.

    Only the architecture's own fields, integers where integers belong, a timm model name for the
    backbone, and only :data:`SAFE_BACKBONE_KWARGS` for timm: a config file never makes protozoo
    open a file, reach the network or import a class. Sizes past :data:`MAX_HEAD_PARAMETERS` are
    refused before any allocation.

    Args:
        arch: The registered architecture.
        model_args: Its arguments (a config's ``model_args``, or ``create_model``'s keywords).
        source: What to name in errors (the config file, or the call).
        trusted: Arguments from the caller's own code (``create_model``): the backbone and its
            timm arguments are theirs to choose; types and sizes are still checked.

    Raises:
        WeightFileError: Naming ``source`` and the key (a ``ValueError``).
    """
    from protozoo.family import family_of_arch

    def bad(key: str, problem: str) -> WeightFileError:
        return WeightFileError(f"{source}: {'' if trusted else 'model_args.'}{key} {problem}")

    if not isinstance(model_args, dict):
        raise WeightFileError(f"{source}: model_args must be an object of architecture arguments, "
                              f"not {type(model_args).__name__}")
    try:
        config_class = family_of_arch(arch).model_class.config_class
        known = {f.name: f for f in dataclasses.fields(config_class)}
    except (ValueError, AttributeError, TypeError) as err:
        if trusted:  # an entrypoint registered without a family: its own code checks its arguments
            return dict(model_args)
        raise WeightFileError(f"{source}: architecture {arch!r} is unknown ({err})") from err
    unknown = sorted(set(model_args) - set(known))
    if unknown:
        raise WeightFileError(f"{source}: unknown architecture arguments {unknown} for {arch}; known: {sorted(known)}")
    if not trusted and model_args.get("arch", arch) != arch:
        raise bad("arch", f"is {model_args['arch']!r} but the architecture is {arch!r}")
    args = {k: v for k, v in model_args.items()}
    for key, least in POSITIVE_INTS.items():
        if key in args and (not isinstance(args[key], int) or isinstance(args[key], bool) or args[key] < least):
            raise bad(key, f"must be an integer >= {least}, not {args[key]!r}")
    if "feature_stage" in args and (not isinstance(args["feature_stage"], int) or isinstance(args["feature_stage"], bool)):
        raise bad("feature_stage", f"must be an integer (a timm stage index, -1 the deepest), not {args['feature_stage']!r}")
    if "backbone" in args and not trusted:
        name = args["backbone"]
        if not isinstance(name, str) or not name or any(c in name for c in ":/\\") or name.startswith("."):
            raise bad("backbone", f"must be a timm model name (no paths, no hf-hub: or other schemes), not {name!r}")
    kwargs = args.get("backbone_kwargs", {})
    if not isinstance(kwargs, dict):
        raise bad("backbone_kwargs", f"must be an object, not {type(kwargs).__name__}")
    for key, value in kwargs.items() if not trusted else ():
        if key not in SAFE_BACKBONE_KWARGS:
            raise bad(f"backbone_kwargs.{key}", f"is not allowed: a saved model may pass only "
                      f"{sorted(SAFE_BACKBONE_KWARGS)} to timm (never files, weights or classes)")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise bad(f"backbone_kwargs.{key}", f"must be a rate in [0, 1), not {value!r}")
    def value(key: str, fallback: int) -> int:
        default = known[key].default if key in known else fallback
        return args.get(key, default if isinstance(default, int) else fallback)

    classes, per_class, depth = value("num_classes", 1), value("prototypes_per_class", 1), value("prototype_dim", 1)
    groups = len(args["lesion_names"]) if isinstance(args.get("lesion_names"), list) else classes
    prototypes = per_class * max(groups, 1)
    size = prototypes * depth + prototypes * classes
    if size > MAX_HEAD_PARAMETERS:
        raise WeightFileError(
            f"{source}: the head would hold {size:.3g} parameters ({prototypes} prototypes of depth {depth}, "
            f"{classes} classes; at most {MAX_HEAD_PARAMETERS:.3g}); check num_classes, prototypes_per_class "
            "and prototype_dim"
        )
    return args


def check_provenance(model: ProtoModel, rows: Any, source: str) -> list[dict[str, Any]]:
    """Check that ``prototypes.json`` rows describe this model's prototypes, one per prototype, in order.

    Raises:
        WeightFileError: Naming ``source`` and the first row that does not fit.
    """
    count = model.num_prototypes
    if not isinstance(rows, list):
        raise WeightFileError(f"{source} must be a list of one row per prototype, not {type(rows).__name__}")
    if len(rows) != count:
        raise WeightFileError(f"{source} has {len(rows)} rows but the model has {count} prototypes; "
                              "it belongs to another model: delete it or re-push")
    classes = model.prototype_class.tolist()
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise WeightFileError(f"{source}: row {index} is not an object")
        if row.get("prototype", index) != index:
            raise WeightFileError(f"{source}: row {index} describes prototype {row.get('prototype')!r}; "
                                  "rows must be in prototype order")
        if "class" in row and row["class"] != classes[index]:
            raise WeightFileError(f"{source}: row {index} says class {row['class']!r} but prototype {index} "
                                  f"belongs to class {classes[index]}; it belongs to another model")
        if "image_id" in row and not isinstance(row["image_id"], (str, int)):
            raise WeightFileError(f"{source}: row {index} has image_id {row['image_id']!r}, not a name")
    return rows


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
    source = repr(str(config_path))
    try:
        config = json.loads(config_path.read_text())
        arch, model_args = config["architecture"], config["model_args"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise WeightFileError(f"{source} is not a protozoo config ({err!r})") from err
    if not isinstance(arch, str):
        raise WeightFileError(f"{source}: architecture must be a registered name, not {arch!r}")
    model_args = check_model_args(arch, model_args, source)
    check_model_args(arch, {**model_args, **overrides}, f"load({str(directory)!r})", trusted=True)
    pretrained_cfg = _pretrained_cfg(config, arch, source)
    try:
        model = registry.get_entrypoint(arch)(**{**model_args, **overrides})
    except (ValueError, TypeError, IndexError, KeyError, RuntimeError) as err:
        raise WeightFileError(f"{source}: model_args do not build a {arch} ({type(err).__name__}: {err})") from err
    state_dict = read_state_dict(weights_path)  # a truncated or garbled file: named as such
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
            try:
                rows = json.loads(prototypes_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise WeightFileError(f"{str(prototypes_path)!r} is not valid JSON ({err}); delete it or re-push") from err
            model.provenance = check_provenance(model, rows, repr(str(prototypes_path)))
    # After the key check (another architecture's file is named as such): bytes changed in a readable file.
    _verify_checksum(config, weights_path, source)
    model.pretrained_cfg = pretrained_cfg
    return model.eval()


def _pretrained_cfg(config: dict[str, Any], arch: str, source: str) -> PretrainedCfg:
    """The config's ``pretrained_cfg`` (absent: the architecture's bare one), checked."""
    data = config.get("pretrained_cfg", {"architecture": arch})
    if not isinstance(data, dict):
        raise WeightFileError(f"{source}: pretrained_cfg must be an object (input size, mean, std...), not {data!r}")
    try:
        cfg = PretrainedCfg.from_dict(data)
    except (TypeError, ValueError) as err:
        raise WeightFileError(f"{source}: pretrained_cfg is malformed ({err})") from err
    size = cfg.input_size
    if not (isinstance(size, tuple) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
        raise WeightFileError(f"{source}: pretrained_cfg.input_size must be [channels, height, width] > 0, not {size!r}")
    for key in ("mean", "std"):
        values = getattr(cfg, key)
        if not (isinstance(values, tuple) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
                and (key == "mean" or all(v > 0 for v in values))):
            raise WeightFileError(f"{source}: pretrained_cfg.{key} must be finite numbers{' > 0' if key == 'std' else ''}, "
                                  f"not {values!r}")
    return cfg


def _verify_checksum(config: dict[str, Any], weights_path: Path, source: str) -> None:
    """Compare the weight file with the checksum its config recorded (configs from before checksums: none)."""
    expected = config.get(CHECKSUM_KEY)
    if expected is None:
        return
    if file_sha256(weights_path) != expected:
        raise WeightFileError(
            f"weight file {str(weights_path)!r} is corrupted or was changed after it was saved: its sha256 differs "
            f"from the {CHECKSUM_KEY} in {source}; re-download or re-save the model"
        )


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
