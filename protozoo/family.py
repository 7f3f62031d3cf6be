"""Model families: one declaration per head family, the only place the tools learn about a family.

A :class:`Family` says, for every model of one head family (ProtoPNet, BRAIxProtoPNet++, multi-view,
lesion, ... or one of your own), how a batch becomes the model's inputs, what the prototype classes
are and which of them an item has, how the family trains, explains and draws. Training, push, the
evaluators, ``protozoo.explain``, the pictures, the CLI and the zoo builder call
:func:`family_of` and nothing else: no ``isinstance`` ladders, no output-type tables, no name tests.

    @dataclass
    class MyConfig(ProtoPNetConfig):
        arch: str = "my_net"

    class MyNet(ProtoPNet):
        config_class = MyConfig

    register_family(Family(name="my_net", model_class=MyNet, title="my head", paper="..."))
    protozoo.create_model("my_net_resnet18")          # one entrypoint per registered backbone

Fields that name code in modules that are heavy to import (training losses, explainers, matplotlib
panels) may be given as ``"module:attribute"`` strings, imported on first use, so that ``import
protozoo`` stays light; a callable works too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from protozoo.backbone_names import BACKBONES
from protozoo.pretrained import PretrainedCfg
from protozoo.registry import register_model

__all__ = [
    "BACKBONES",
    "Family",
    "family_of",
    "family_of_arch",
    "list_families",
    "register_family",
]

Batch = dict[str, Any]
Ref = Callable | str  # a callable, or "module:attribute" imported on first use


def resolve_ref(ref: Ref) -> Callable:
    """The callable a :data:`Ref` names."""
    if callable(ref):
        return ref
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


# ----------------------------------------------------------------------------- default behaviours


def image_inputs(batch: Batch) -> tuple[Tensor, ...]:
    """Single-image models: ``model(batch["image"])``."""
    return (batch["image"],)


def single_view(batch: Batch) -> dict[str, Batch]:
    """Single-image models see one view, the item itself: ``{"image": batch}``."""
    return {"image": batch}


def class_labels(batch: Batch) -> Tensor:
    """The prototype-class labels of ProtoPNet-style models: the class labels, (B,) or multi-hot (B, K)."""
    return torch.as_tensor(batch["label"])


def output_class_names(model: Any) -> list[str]:
    """The model's class names (``pretrained_cfg.label_names``, else ``"0"``, ``"1"``, ...)."""
    names = getattr(model.pretrained_cfg, "label_names", None)
    return list(names) if names else [str(k) for k in range(model.num_classes)]


def predicted_classes(model: Any, batch: Batch) -> Tensor:
    """(B,) the arg-max of the model's logits: the prototype classes a ProtoPNet-style model finds."""
    return family_of(model).logits(model, batch).argmax(dim=1)


def dataset_arguments(dataset: Any) -> dict[str, Any]:
    """Architecture arguments a dataset decides: its number of classes."""
    return {"num_classes": len(dataset.classes)}


# ----------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class Family:
    """Everything the tools need to know about one head family.

    Attributes:
        name: Architecture prefix: entrypoints are ``f"{name}_{backbone}"``.
        model_class: The ``nn.Module`` (a :class:`~protozoo.models._base.ProtoModel` with
            ``config_class``, ``latent``, ``similarity_maps``, ``prototype_class``...).
        title: One line for people (``protozoo info``, reports).
        paper: The paper the family follows (default pretrained config of its entrypoints).
        prototype_kind: What a prototype class is, in words: ``"class"``, or ``"lesion"`` for a
            head whose prototypes belong to lesion types rather than to the output classes.
        requires: Item keys training and evaluation need (checked with a message naming them).
        inputs: ``batch -> tuple``: the positional arguments of ``model(...)``.
        views: ``batch -> {view: single-view batch}``: the images the prototypes are matched
            against, each with the item's ``label``/``id`` (ids made unique per view) and the
            view's ``mask``/``parts`` where present. Push, the evaluators and the gallery read it.
        input_names: Names of ``inputs``, in order (the CLI reads one image file per name).
        prototype_classes: ``model -> [names]`` of the prototype classes (``prototype_class``
            indexes them).
        labels: ``batch -> (B,) or (B, C)``: the true prototype classes of each item (class
            indices or multi-hot), which decide where a prototype may be pushed and which
            prototypes the evaluators score.
        predicted: ``(model, batch) -> (B,) or (B, C) bool``: the prototype classes the model finds.
        targets: ``batch -> (B,)`` class indices ``output.logits`` is scored against.
        dataset_arguments: ``dataset -> {architecture argument: value}`` a training set decides
            (``num_classes``; the lesion names for the lesion head).
        loss: ``(model, output, batch, loss_weights, phase) -> (loss, {term: value})``.
        recipe: Keyword arguments of :class:`~protozoo.train.Recipe` that make the family's
            default recipe (``{"global_epochs": 5, "unique_source": "per_class"}``).
        explainer: ``(model, output, inputs, top_k, classes) -> [Explanation]``.
        panel: ``(explanation, sources, *, path) -> Figure``: the family's local explanation panel.
        saliency_branches: ``{name: (model, x, view) -> (B, K) logits}`` that post-hoc saliency
            (Grad-CAM...) can explain on one view's images ``x``, the default first
            (:func:`protozoo.evaluate.posthoc_localization`; BRAIxProtoPNet++: ``global``, its
            global CNN branch, then ``ensemble``).
        example_data: A built-in ``load_dataset`` spec the family trains on (its items have
            everything in ``requires``); the shared contract test runs every family on it.
        backbones: Registered name suffix -> (timm backbone, default pretrained config): one
            entrypoint ``f"{name}_{suffix}"`` each (default: :data:`BACKBONES`).
    """

    name: str
    model_class: type
    title: str = ""
    paper: str = ""
    prototype_kind: str = "class"
    requires: tuple[str, ...] = ("image", "label")
    inputs: Ref = image_inputs
    views: Ref = single_view
    input_names: tuple[str, ...] = ("image",)
    prototype_classes: Ref = output_class_names
    labels: Ref = class_labels
    predicted: Ref = predicted_classes
    targets: Ref = "protozoo.family:class_targets"
    dataset_arguments: Ref = dataset_arguments
    loss: Ref = "protozoo.train.losses:protopnet_loss"
    recipe: Mapping[str, Any] = field(default_factory=dict)
    explainer: Ref = "protozoo.explanation:explain_protopnet"
    panel: Ref = "protozoo.viz.panel:render_panel"
    saliency_branches: Mapping[str, Ref] = field(
        default_factory=lambda: {"logits": "protozoo.evaluate.posthoc:image_logits"}
    )
    example_data: str = "synthetic-parts"
    backbones: Mapping[str, tuple[str, PretrainedCfg]] = field(default_factory=lambda: dict(BACKBONES))

    def resolved(self, name: str) -> Callable:
        """The callable of field ``name`` (imported on first use when given as a string)."""
        return resolve_ref(getattr(self, name))

    # The calls the tools make, each a thin reading of the fields above.

    def default_recipe(self, **changes: Any):
        """The family's default :class:`~protozoo.train.Recipe`, with ``changes`` on top."""
        from protozoo.train.schedule import Recipe

        return Recipe(**{**self.recipe, **changes})

    def model_inputs(self, batch: Batch) -> tuple[Any, ...]:
        return tuple(self.resolved("inputs")(batch))

    def image_views(self, batch: Batch) -> dict[str, Batch]:
        return self.resolved("views")(batch)

    def class_names(self, model: Any) -> list[str]:
        """Names of the prototype classes (a lesion head's lesions; else the output classes)."""
        return list(self.resolved("prototype_classes")(model))

    def logits(self, model: Any, batch: Batch) -> Tensor:
        """(B, K) output logits of a batch."""
        return model(*self.model_inputs(batch)).logits

    def item_classes(self, model: Any, batch: Batch, source: str = "true") -> Tensor:
        """(B, C) bool: which prototype classes each item has (``"true"``) or the model finds (``"predicted"``)."""
        if source not in ("true", "predicted"):
            raise ValueError(f"source must be 'true' or 'predicted', got {source!r}")
        if source == "true":
            missing = [key for key in self.requires if key not in batch and key != "image"]
            if missing:
                raise ValueError(
                    f"{self.title or self.name} models are scored on items with {missing}; "
                    f"this data has only {sorted(batch)}"
                )
            found = self.resolved("labels")(batch)
        else:
            found = self.resolved("predicted")(model, batch)
        return class_mask(torch.as_tensor(found), len(self.class_names(model)))

    def own_prototypes(self, model: Any, batch: Batch, source: str = "true") -> Tensor:
        """(B, P) bool: the prototypes of each item's prototype classes."""
        present = self.item_classes(model, batch, source)  # (B, C)
        return present[:, model.prototype_class.to(present.device)]

    def check_dataset(self, model: Any, dataset: Any) -> None:
        """Raise a ValueError naming the difference when a dataset does not fit the model.

        What a training set would decide (``dataset_arguments``: its class count; a lesion
        dataset's lesion names) must equal the model's architecture. A dataset that does not say
        (no ``classes``, e.g. a ``Subset``) is not checked.
        """
        try:
            decided = self.resolved("dataset_arguments")(dataset)
        except (AttributeError, TypeError, ValueError):
            return
        for key, value in decided.items():
            have = getattr(model.config, key, None)
            if have is not None and have != value:
                raise ValueError(
                    f"the dataset gives {key}={value!r} but the model has {key}={have!r}; evaluate the model on data "
                    f"of its own classes (protozoo train fits a model to a dataset)"
                )

    def describe_prototypes(self, model: Any) -> str:
        """``"15 prototypes (3 per lesion x 5 lesions)"``, counted from ``prototype_class``."""
        counts = torch.bincount(model.prototype_class.cpu(), minlength=len(self.class_names(model))).tolist()
        kind = self.prototype_kind
        per = f"{counts[0]} per {kind}" if len(set(counts)) == 1 else f"{min(counts)}-{max(counts)} per {kind}"
        return f"{sum(counts)} prototypes ({per} x {len(counts)} {_plural(kind)})"


def class_targets(batch: Batch) -> Tensor:
    """``batch["label"]``: the class indices the logits are scored against."""
    return batch["label"]


def class_mask(labels: Tensor, num_classes: int) -> Tensor:
    """(B,) class indices or (B, C) multi-hot labels -> (B, C) bool membership."""
    if labels.dtype == torch.bool and labels.ndim == 2:
        return labels
    if labels.ndim == 1:
        return F.one_hot(labels.long(), num_classes).bool()
    return labels > 0


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "ss")) else "s")


# ----------------------------------------------------------------------------- the registry

_FAMILIES: dict[type, Family] = {}
_BY_ARCH: dict[str, Family] = {}  # registered architecture -> its family


def register_family(family: Family, module: str | None = None) -> list[str]:
    """Register a family: its contract, and one model entrypoint per backbone in ``family.backbones``.

    Args:
        family: The declaration.
        module: The module that defines the family (default: ``family.model_class.__module__``);
            the generated entrypoints become its attributes and are added to its ``__all__``.

    Returns:
        The registered architecture names.
    """
    module = module or family.model_class.__module__
    _FAMILIES[family.model_class] = family
    names = []
    for suffix, (timm_name, default_cfg) in family.backbones.items():
        names.append(_register_entrypoint(family, module, f"{family.name}_{suffix}", timm_name, default_cfg))
    return names


def _register_entrypoint(family: Family, module: str, arch: str, timm_name: str, default_cfg: PretrainedCfg) -> str:
    config_class = family.model_class.config_class

    def entrypoint(**overrides: Any):
        return family.model_class(replace(config_class(arch=arch, backbone=timm_name), **overrides))

    entrypoint.__name__ = entrypoint.__qualname__ = arch
    entrypoint.__module__ = module
    entrypoint.__doc__ = (
        f"{family.title or family.model_class.__name__} on timm ``{timm_name}``. "
        f"Keyword arguments override :class:`{config_class.__name__}`."
    )
    register_model(entrypoint, default_cfg=default_cfg.replace(paper=family.paper or default_cfg.paper))
    _BY_ARCH[arch] = family
    target = sys.modules.get(module)
    if target is not None:
        setattr(target, arch, entrypoint)
    return arch


def family_of(model: Any) -> Family:
    """The family of a model: the nearest registered class in its class hierarchy.

    Raises:
        TypeError: For a model of no registered family, saying how to register one.
    """
    for cls in type(model).__mro__:
        if cls in _FAMILIES:
            return _FAMILIES[cls]
    raise TypeError(
        f"{type(model).__name__} belongs to no registered model family; declare one with "
        "protozoo.family.register_family(Family(name=..., model_class=...))"
    )


def family_of_arch(arch: str) -> Family:
    """The family of a registered architecture (``braix_protopnet_pp_resnet18``), without building it."""
    if arch not in _BY_ARCH:
        raise ValueError(f"{arch!r} is no architecture of a registered family (protozoo.list_models() lists them)")
    return _BY_ARCH[arch]


def list_families() -> dict[str, Family]:
    """Every registered family by name."""
    return {family.name: family for family in _FAMILIES.values()}
