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
SAFE_BACKBONE_KWARGS = frozenset(
    {
        "drop_rate",
        "drop_path_rate",
        "drop_block_rate",
        "attn_drop_rate",
        "proj_drop_rate",
        "pos_drop_rate",
        "patch_drop_rate",
    }
)
# Integer architecture arguments and their least value.
POSITIVE_INTS = {"num_classes": 1, "prototypes_per_class": 1, "prototype_dim": 1, "in_chans": 1}
# The most head parameters (prototypes P x D plus the last layer P x K) a model may have: 2**30
# floats is 4 GiB, far past any prototype network; a typo such as num_classes=10**5 is refused
# here instead of failing (or swapping) in the allocation.
MAX_HEAD_PARAMETERS = 2**30


class UntrainedWarning(UserWarning):
    """A model was loaded whose head (or backbone) has no trained weights."""


class WeightsNotFoundError(FileNotFoundError):
    """A registered tag's weights are in none of the places :func:`locate_weights` looks in."""


def checkout_weights() -> Path | None:
    """The source checkout's ``weights/`` folder when protozoo runs from a git checkout, else None.

    A wheel install has no weights: the package lies in ``site-packages`` with no ``pyproject.toml``
    beside it.
    """
    root = Path(__file__).resolve().parents[1]
    folder = root / "weights"
    return folder if (root / "pyproject.toml").is_file() and folder.is_dir() else None


def weights_root() -> Path:
    """Where zoo weight folders are written by default: ``$PROTOZOO_WEIGHTS``, else ``weights/`` beside the package."""
    env = os.environ.get("PROTOZOO_WEIGHTS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "weights"


def save_pretrained(model: ProtoModel, directory: str | Path, *, metrics: dict[str, Any] | None = None) -> Path:
    """Write a model's files into ``directory`` (created if needed) and return it.

    Args:
        model: The model.
        directory: The folder.
        metrics: Measured results in the form of ``metrics.json`` (:mod:`protozoo.model_card`).
            Given, or recorded with these very weights (``model.metrics``, read by :func:`load_pretrained`,
            kept only while the weights' sha256 is the one they were measured on), they are written
            to ``metrics.json`` with a model card (``README.md``, Hub metadata and results).
    """
    from protozoo.model_card import CARD_NAME, METRICS_NAME, render_card, write_card, write_metrics

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_state_dict(model.state_dict(), directory / WEIGHTS_NAME, metadata={"format": "pt"})
    checksum = file_sha256(directory / WEIGHTS_NAME)
    config = {
        "format_version": FORMAT_VERSION,
        "architecture": model.config.arch,
        "model_args": model.model_args(),
        "pretrained_cfg": model.pretrained_cfg.to_dict(),
        CHECKSUM_KEY: checksum,
    }
    write_json(config, directory / CONFIG_NAME)
    if model.provenance is not None:
        write_json(model.provenance, directory / PROTOTYPES_NAME)
    else:  # a folder that held a pushed model must not lend its provenance to this one
        (directory / PROTOTYPES_NAME).unlink(missing_ok=True)
    recorded = getattr(model, "metrics", None)
    if metrics is None and recorded and recorded.get(CHECKSUM_KEY) == checksum:
        metrics = recorded  # measured on exactly these weights
    if metrics is not None:
        metrics = {**metrics, CHECKSUM_KEY: checksum}
        write_metrics(metrics, directory)
        write_card(render_card(model, metrics, load_name=str(directory)), directory)
        model.metrics = metrics
    elif (directory / METRICS_NAME).exists():  # another model's results: neither they nor their card stay
        (directory / METRICS_NAME).unlink()
        (directory / CARD_NAME).unlink(missing_ok=True)
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
        raise WeightFileError(
            f"{source}: model_args must be an object of architecture arguments, not {type(model_args).__name__}"
        )
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
    if "feature_stage" in args and (
        not isinstance(args["feature_stage"], int) or isinstance(args["feature_stage"], bool)
    ):
        raise bad(
            "feature_stage", f"must be an integer (a timm stage index, -1 the deepest), not {args['feature_stage']!r}"
        )
    if "backbone" in args and not trusted:
        name = args["backbone"]
        if not isinstance(name, str) or not name or any(c in name for c in ":/\\") or name.startswith("."):
            raise bad("backbone", f"must be a timm model name (no paths, no hf-hub: or other schemes), not {name!r}")
    kwargs = args.get("backbone_kwargs", {})
    if not isinstance(kwargs, dict):
        raise bad("backbone_kwargs", f"must be an object, not {type(kwargs).__name__}")
    for key, value in kwargs.items() if not trusted else ():
        if key not in SAFE_BACKBONE_KWARGS:
            raise bad(
                f"backbone_kwargs.{key}",
                f"is not allowed: a saved model may pass only "
                f"{sorted(SAFE_BACKBONE_KWARGS)} to timm (never files, weights or classes)",
            )
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
        raise WeightFileError(
            f"{source} has {len(rows)} rows but the model has {count} prototypes; "
            "it belongs to another model: delete it or re-push"
        )
    classes = model.prototype_class.tolist()
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise WeightFileError(f"{source}: row {index} is not an object")
        if row.get("prototype", index) != index:
            raise WeightFileError(
                f"{source}: row {index} describes prototype {row.get('prototype')!r}; rows must be in prototype order"
            )
        if "class" in row and row["class"] != classes[index]:
            raise WeightFileError(
                f"{source}: row {index} says class {row['class']!r} but prototype {index} "
                f"belongs to class {classes[index]}; it belongs to another model"
            )
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
                raise WeightFileError(
                    f"{str(prototypes_path)!r} is not valid JSON ({err}); delete it or re-push"
                ) from err
            model.provenance = check_provenance(model, rows, repr(str(prototypes_path)))
    # After the key check (another architecture's file is named as such): bytes changed in a readable file.
    _verify_checksum(config, weights_path, source)
    model.pretrained_cfg = pretrained_cfg
    model.metrics = None if reinit else _recorded_metrics(directory)
    return model.eval()


def _recorded_metrics(directory: Path) -> dict[str, Any] | None:
    """The folder's ``metrics.json`` (what was measured on these weights); a malformed one is ignored, said."""
    from protozoo.model_card import read_metrics

    try:
        return read_metrics(directory)
    except ValueError as err:
        warnings.warn(f"ignored the results of this model: {err}", stacklevel=3)
        return None


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
        raise WeightFileError(
            f"{source}: pretrained_cfg.input_size must be [channels, height, width] > 0, not {size!r}"
        )
    for key in ("mean", "std"):
        values = getattr(cfg, key)
        if not (
            isinstance(values, tuple)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
            and (key == "mean" or all(v > 0 for v in values))
        ):
            raise WeightFileError(
                f"{source}: pretrained_cfg.{key} must be finite numbers{' > 0' if key == 'std' else ''}, not {values!r}"
            )
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


def locate_weights(cfg: PretrainedCfg, *, cache_dir: str | Path | None = None, requested: str | None = None) -> Path:
    """The local folder holding the weights of a registered tag.

    Looked for in this order, the first folder with a ``config.json`` wins:

    1. ``$PROTOZOO_WEIGHTS/<arch.tag>/`` (a folder of ``arch.tag`` folders);
    2. the source checkout's ``weights/<arch.tag>/`` (:func:`checkout_weights`; not in a wheel install);
    3. the Hugging Face cache's snapshot of the tag's ``hf_hub_id`` (``cache_dir``, else
       ``$HF_HUB_CACHE``, else huggingface_hub's default);
    4. a download of ``hf_hub_id`` from the Hub, unless ``HF_HUB_OFFLINE`` is set.

    Args:
        cfg: The tag's configuration (``cfg.file``, an explicit folder, short-circuits the search).
        cache_dir: The Hugging Face cache folder.
        requested: The name the user asked for (an alias), for the error.

    Raises:
        WeightsNotFoundError: Naming every place tried and how to get the weights; never an
            untrained model in their place.
    """
    if cfg.file:
        return Path(cfg.file)
    folder_name = cfg.weights_dir or cfg.name
    tried: list[str] = []
    env = os.environ.get("PROTOZOO_WEIGHTS")
    if env:
        folder = Path(env) / folder_name
        if (folder / CONFIG_NAME).is_file():
            return folder
        tried.append(
            f"$PROTOZOO_WEIGHTS: {str(folder)!r} " + ("has no config.json" if folder.is_dir() else "does not exist")
        )
    else:
        tried.append("$PROTOZOO_WEIGHTS: not set")
    checkout = checkout_weights()
    if checkout is not None:
        folder = checkout / folder_name
        if (folder / CONFIG_NAME).is_file():
            return folder
        tried.append(
            f"the source checkout's weights folder: {str(folder)!r} "
            + ("has no config.json" if folder.is_dir() else "does not exist")
        )
    else:
        tried.append(f"the source checkout's weights/: none (protozoo is installed at {str(Path(__file__).parent)!r})")
    if cfg.hf_hub_id:
        cache = hf_cache_dir(cache_dir)
        snapshot = cached_snapshot(cfg.hf_hub_id, cache)
        if snapshot is not None:
            return snapshot
        tried.append(f"the Hugging Face cache {str(cache)!r}: no snapshot of {cfg.hf_hub_id!r}")
        if hf_offline():
            tried.append(f"a download of {cfg.hf_hub_id!r} from the Hugging Face Hub: skipped, HF_HUB_OFFLINE is set")
        else:
            try:
                return hub_snapshot(cfg.hf_hub_id, cache)
            except Exception as err:  # noqa: BLE001  (network, auth, missing repo: all reported below)
                tried.append(f"a download of {cfg.hf_hub_id!r} from the Hugging Face Hub: {type(err).__name__}: {err}")
    else:
        tried.append("the Hugging Face Hub: the tag declares no hf_hub_id")
    asked = f"{requested!r} ({cfg.name})" if requested and requested != cfg.name else repr(cfg.name)
    how = [
        f"set PROTOZOO_WEIGHTS to a folder holding {folder_name}/ (the weights/ folder of a protozoo git checkout has it)"
    ]
    if cfg.hf_hub_id:
        how.append(f"download them once online (huggingface-cli download {cfg.hf_hub_id}, or unset HF_HUB_OFFLINE)")
    how.append(f"rebuild them (python examples/build_zoo_model.py {cfg.name} in a checkout)")
    raise WeightsNotFoundError(
        f"the trained weights of {asked} were not found; tried:\n"
        + "".join(f"  {i}. {place}\n" for i, place in enumerate(tried, 1))
        + "To get them: "
        + "; or ".join(how)
    )


def hf_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The Hugging Face hub cache: ``cache_dir``, else ``$HF_HUB_CACHE`` (read now), else huggingface_hub's default."""
    from huggingface_hub import constants

    return Path(cache_dir or os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def hf_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, and as huggingface_hub read it at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").upper()
    return value in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def cached_snapshot(repo_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot folder of a Hub model repo (its ``main`` revision) holding ``config.json``, or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    return folder if (folder / CONFIG_NAME).is_file() else None


def load_registered(
    cfg: PretrainedCfg, *, cache_dir: str | Path | None = None, requested: str | None = None, **overrides: Any
) -> ProtoModel:
    """Load the trained weights a registered configuration points at; the model keeps that pointer."""
    model = load_pretrained(locate_weights(cfg, cache_dir=cache_dir, requested=requested), **overrides)
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
    metrics: dict[str, Any] | None = None,
) -> str:
    """Save a model to a temporary folder and upload it as a Hub model repo, with its model card.

    Args:
        model: The model.
        repo_id: ``org/repo`` (only ``[\\w.-]`` characters: an alias like ``braix-protopnet++`` is not one).
        token: Hub token (default: the logged-in one).
        private: Create the repo private.
        commit_message: The commit message.
        api: A ``huggingface_hub.HfApi`` (or a stand-in with ``create_repo``/``upload_folder``).
        metrics: Measured results (see :func:`save_pretrained`); the card's ``model-index`` lists them.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    from protozoo.model_card import CARD_NAME, render_card, write_card

    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, metrics=metrics)
        if not (Path(tmp) / CARD_NAME).is_file():  # no results: a card with the metadata all the same
            write_card(render_card(model, name=repo_id.split("/")[-1], load_name=f"hf-hub:{repo_id}"), tmp)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
