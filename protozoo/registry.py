"""The model registry, in timm's style.

Entrypoints are registered with :func:`register_model`; a model's full name is ``arch.tag``
(architecture . weights tag). Aliases such as ``braix-protopnet++`` name a full model name and are
never folder or Hub repo names.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

from protozoo.pretrained import PretrainedCfg

F = TypeVar("F", bound=Callable)

_entrypoints: dict[str, Callable] = {}  # arch -> entrypoint
_module_of: dict[str, str] = {}  # arch -> defining module (the family)
_pretrained: dict[str, dict[str, PretrainedCfg]] = {}  # arch -> tag -> cfg (insertion = preference)
_aliases: dict[str, str] = {}  # alias -> arch or arch.tag
_tag_args: dict[tuple[str, str], dict] = {}  # (arch, tag) -> the architecture arguments its weights were saved with


def register_model(fn: F | None = None, *, default_cfg: PretrainedCfg | None = None) -> F | Callable[[F], F]:
    """Register a model entrypoint under its function name.

    Args:
        fn: The entrypoint. It takes architecture keyword arguments and returns a randomly
            initialised model; it never downloads or reads files.
        default_cfg: Input size and normalisation of the untrained architecture (tag ``""``).

    Returns:
        The entrypoint, unchanged (usable as ``@register_model`` or ``@register_model(...)``).
    """

    def wrap(f: F) -> F:
        arch = f.__name__
        if arch in _entrypoints and _module_of[arch] != f.__module__:
            raise ValueError(f"model {arch!r} is already registered by {_module_of[arch]}")
        _entrypoints[arch] = f
        _module_of[arch] = f.__module__
        cfg = (default_cfg or PretrainedCfg()).replace(architecture=arch, tag="")
        _pretrained.setdefault(arch, {})[""] = cfg
        module = sys.modules.get(f.__module__)
        if module is not None and hasattr(module, "__all__"):
            module.__all__.append(arch)
        return f

    return wrap(fn) if fn is not None else wrap


def register_pretrained(cfg: PretrainedCfg, model_args: dict | None = None) -> None:
    """Register trained weights for an already registered architecture (``cfg.architecture``).

    The zoo's tags are registered from their declarations (:mod:`protozoo.zoo_tags`, through
    :func:`protozoo.zoo.register_tags`).

    Args:
        cfg: Where the weights are and how to feed them.
        model_args: The architecture arguments the weights were trained with (the declaration's
            ``model_args``, equal to their ``config.json``'s): ``create_model`` builds that
            architecture for the tag, as ``load`` does.
    """
    if cfg.architecture not in _entrypoints:
        raise ValueError(f"cannot register weights for unknown architecture {cfg.architecture!r}")
    if not cfg.tag:
        raise ValueError("trained weights need a non-empty tag (the part after the dot)")
    _pretrained[cfg.architecture][cfg.tag] = cfg
    if model_args is not None:
        _tag_args[cfg.architecture, cfg.tag] = dict(model_args)


def model_args(cfg: PretrainedCfg) -> dict:
    """The architecture arguments of a registered tag's weights (empty for the untrained default)."""
    return dict(_tag_args.get((cfg.architecture, cfg.tag), {}))


def register_alias(alias: str, target: str) -> None:
    """Let ``alias`` stand for ``target`` (an ``arch`` or ``arch.tag``) in create_model and load."""
    arch, _ = split_model_name(target)
    if arch not in _entrypoints:
        raise ValueError(f"alias {alias!r} points at unknown architecture {arch!r}")
    _aliases[alias] = target


def split_model_name(name: str) -> tuple[str, str]:
    """Split ``arch.tag`` into ``(arch, tag)``; ``tag`` is ``""`` when absent."""
    arch, _, tag = name.partition(".")
    return arch, tag


def list_models(pattern: str | Iterable[str] = "*", pretrained: bool = False, *, aliases: bool = False) -> list[str]:
    """List registered models whose names match an fnmatch pattern.

    Args:
        pattern: fnmatch pattern(s), e.g. ``"protopnet_res*"``.
        pretrained: List only models with trained weights, as full ``arch.tag`` names.
        aliases: Also list aliases whose name matches.

    Returns:
        Sorted names: architectures, or ``arch.tag`` names when ``pretrained`` is set.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if pretrained:
        names = [cfg.name for cfgs in _pretrained.values() for cfg in cfgs.values() if cfg.has_weights]
    else:
        names = list(_entrypoints)
    if aliases:
        names += list(_aliases)
    return sorted(n for n in set(names) if any(fnmatch.fnmatch(n, p) for p in patterns))


def list_aliases() -> dict[str, str]:
    """All aliases and the model names they stand for."""
    return dict(_aliases)


def is_model(name: str) -> bool:
    """Whether ``name`` (arch, arch.tag or alias) resolves to a registered model."""
    try:
        resolve(name)
    except ValueError:
        return False
    return True


def resolve(name: str) -> PretrainedCfg:
    """Resolve an alias, ``arch`` or ``arch.tag`` to its pretrained configuration.

    A bare ``arch`` resolves to its first registered trained weights if it has any, else to the
    untrained default configuration.

    Raises:
        ValueError: For an unknown name, listing the closest registered names.
    """
    full = _aliases.get(name, name)
    arch, tag = split_model_name(full)
    if arch not in _entrypoints:
        raise ValueError(_unknown_message(name))
    cfgs = _pretrained[arch]
    if tag:
        if tag not in cfgs:
            known = ", ".join(c.name for c in cfgs.values() if c.tag) or "none"
            raise ValueError(f"model {arch!r} has no weights tagged {tag!r}; known tags: {known}")
        return cfgs[tag]
    trained = [c for c in cfgs.values() if c.has_weights]
    return trained[0] if trained else cfgs[""]


def default_cfg(arch: str) -> PretrainedCfg:
    """The untrained configuration of ``arch`` (tag ``""``): its input size and normalisation."""
    if arch not in _entrypoints:
        raise ValueError(_unknown_message(arch))
    return _pretrained[arch][""]


def get_entrypoint(arch: str) -> Callable:
    if arch not in _entrypoints:
        raise ValueError(_unknown_message(arch))
    return _entrypoints[arch]


def model_family(arch: str) -> str:
    """The module that defines ``arch`` (``protozoo.models.protopnet``)."""
    return _module_of[arch]


def _unknown_message(name: str) -> str:
    candidates = list(_entrypoints) + list(_aliases)
    for cfgs in _pretrained.values():
        candidates += [c.name for c in cfgs.values() if c.tag]
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown model {name!r}{hint} (protozoo.list_models() lists all {len(_entrypoints)} architectures)"
