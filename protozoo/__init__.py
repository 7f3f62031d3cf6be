"""protozoo: a model zoo of interpretable prototype networks ("this looks like that").

    import protozoo
    protozoo.list_models("protopnet*")
    model = protozoo.create_model("protopnet_resnet18", num_classes=5)
    out = model(x)                        # ProtoOutput(logits, similarities, min_distances, ...)
    model.save_pretrained("out/"); protozoo.load("out/")
"""

from protozoo import models  # noqa: F401  (registers the entrypoints)
from protozoo.builder import create_model
from protozoo.explain import Explanation, explain
from protozoo.hub import UntrainedWarning, load
from protozoo.outputs import ProtoOutput
from protozoo.push import PushResult, push_prototypes
from protozoo.pretrained import PretrainedCfg
from protozoo.registry import is_model, list_aliases, list_models, register_model

from protozoo.zoo import register_weights

register_weights()  # weights/<arch>.<tag>/ folders become trained models (protozoo list --pretrained)

__version__ = "0.1.0"

__all__ = [
    "Explanation",
    "ProtoOutput",
    "PushResult",
    "PretrainedCfg",
    "UntrainedWarning",
    "create_model",
    "explain",
    "is_model",
    "list_aliases",
    "list_models",
    "load",
    "push_prototypes",
    "register_model",
]
