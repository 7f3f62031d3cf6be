"""How ``fit`` drives each model family: its inputs, its loss per phase, its targets, its recipe.

One adapter per family, looked up along the model's class hierarchy, so a new head plugs into
the one training loop by registering a :class:`Task`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from protozoo.train.losses import LossWeights, protopnet_loss
from protozoo.train.schedule import Recipe

Batch = dict[str, Any]


def image_forward(model: nn.Module, batch: Batch):
    """Single-view models: ``model(batch["image"])``."""
    return model(batch["image"])


def two_view_forward(model: nn.Module, batch: Batch):
    """Multi-view models: ``model(cc, mlo)`` from ``batch["views"]``; a view absent from the batch is None."""
    views = batch["views"]
    return model(views.get("cc", {}).get("image"), views.get("mlo", {}).get("image"))


def class_targets(batch: Batch) -> Tensor:
    return batch["label"]


@dataclass(frozen=True)
class Task:
    """A family's training adapter.

    Attributes:
        forward: ``(model or its DDP wrapper, batch) -> output``.
        loss: ``(model, output, batch, loss_weights, phase) -> (loss, {term: value})``.
        targets: ``batch -> (B,)`` class indices that ``output.logits`` is scored against.
        recipe: Default recipe of the family (``protozoo train`` uses it when none is given).
        push_label_key: The batch key whose labels decide which images a prototype may be pushed
            onto (``"lesions"``, multi-hot, for the lesion head).
    """

    forward: Callable[[nn.Module, Batch], Any] = image_forward
    loss: Callable[..., tuple[Tensor, dict[str, float]]] = protopnet_loss
    targets: Callable[[Batch], Tensor] = class_targets
    recipe: Callable[[], Recipe] = Recipe
    push_label_key: str = "label"


_TASKS: dict[type, Task] = {}


def register_task(model_class: type, task: Task) -> None:
    """Declare how ``fit`` trains models of ``model_class`` (and its subclasses)."""
    _TASKS[model_class] = task


def task_for(model: nn.Module) -> Task:
    """The adapter of the nearest registered class in the model's hierarchy."""
    for cls in type(model).__mro__:
        if cls in _TASKS:
            return _TASKS[cls]
    raise TypeError(f"no training task registered for {type(model).__name__}; see protozoo.train.tasks.register_task")


def _register_builtin() -> None:
    from protozoo.models.braix import BRAIxProtoPNet
    from protozoo.models.diverse import DiverseProtoPNet
    from protozoo.models.lesion import LesionProtoPNet
    from protozoo.models.multiview import MultiViewProtoPNet
    from protozoo.models.protopnet import ProtoPNet
    from protozoo.train.losses_lesion import lesion_loss
    from protozoo.train.losses_medical import braix_loss, diverse_loss
    from protozoo.train.losses_multiview import multiview_loss

    register_task(ProtoPNet, Task())
    # BRAIxProtoPNet++: global branch alone, then prototypes, then jointly; no source image reused
    # within a class.
    register_task(BRAIxProtoPNet, Task(loss=braix_loss, recipe=lambda: Recipe(global_epochs=5, unique_source="per_class")))
    register_task(DiverseProtoPNet, Task(loss=diverse_loss, recipe=lambda: Recipe(unique_source="global")))
    # Multi-view: one breast per item; push reads single views (batch["image"], or pass
    # protozoo.data.views.FlattenViews(data) as push_data for both views).
    register_task(MultiViewProtoPNet, Task(forward=two_view_forward, loss=multiview_loss))
    # Lesion head: a lesion prototype is pushed onto an image that shows its lesion (multi-hot labels).
    # Its separation is taken per (image, absent lesion) pair and bounded (latents lie in [0, 1]^D),
    # so it is weighted like the cluster cost: it keeps background-matching prototypes away.
    register_task(LesionProtoPNet, Task(loss=lesion_loss, push_label_key="lesions",
                                        recipe=lambda: Recipe(loss=LossWeights(separation=-0.8))))


_register_builtin()
