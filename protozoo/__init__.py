"""protozoo: a model zoo of interpretable prototype networks ("this looks like that").

import protozoo
protozoo.list_models("protopnet*")
model = protozoo.create_model("protopnet_resnet18", num_classes=5)
out = model(x)                        # ProtoOutput(logits, similarities, min_distances, ...)
model.save_pretrained("out/"); protozoo.load("out/")
"""

import importlib
from typing import Any

from protozoo import models  # noqa: F401  (registers the families and their entrypoints)
from protozoo.builder import create_model, load
from protozoo.explanation import Explanation, explain
from protozoo.family import Family, family_of, list_families, register_family
from protozoo.hub import UntrainedWarning, WeightsNotFoundError
from protozoo.outputs import ProtoOutput
from protozoo.pretrained import PretrainedCfg
from protozoo.push import PushResult, push_prototypes
from protozoo.registry import is_model, list_aliases, list_models, register_model
from protozoo.zoo import register_tags

register_tags()  # the zoo's declared arch.tag weights (protozoo/zoo_tags.py; protozoo list --pretrained)

__version__ = "0.1.0"

# Subpackages the README and docs use as ``protozoo.evaluate.consistency(...)``, loaded on first use
# so that ``import protozoo`` stays light (no matplotlib, pydicom or grad-cam until needed).
_LAZY_MODULES = ("data", "evaluate", "train", "viz")


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        try:
            return importlib.import_module(f"protozoo.{name}")
        except ModuleNotFoundError as err:  # an optional dependency: name the extra that installs it
            from protozoo.extras import missing_extra

            raise ModuleNotFoundError(missing_extra(err) or str(err), name=err.name) from err
    raise AttributeError(f"module 'protozoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES))


__all__ = [
    "Explanation",
    "Family",
    "ProtoOutput",
    "PushResult",
    "PretrainedCfg",
    "UntrainedWarning",
    "WeightsNotFoundError",
    "create_model",
    "explain",
    "family_of",
    "is_model",
    "list_aliases",
    "list_families",
    "list_models",
    "load",
    "push_prototypes",
    "register_family",
    "register_model",
]
