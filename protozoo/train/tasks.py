"""How ``fit`` drives a model: read from the model's family (:mod:`protozoo.family`), nothing else.

A :class:`Task` is the training side of a family: feed a batch, score it, the default recipe.
``fit(..., task=Task(...))`` overrides it for one run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from protozoo.family import family_of
from protozoo.train.schedule import Recipe

Batch = dict[str, Any]


@dataclass(frozen=True)
class Task:
    """A family's training adapter.

    Attributes:
        forward: ``(model or its DDP wrapper, batch, perturb=None) -> output``; ``perturb``
            (``x -> x'``) changes the image inputs first (the recipe's ``input_noise``).
        loss: ``(model, output, batch, loss_weights, phase) -> (loss, {term: value})``.
        targets: ``batch -> (B,)`` class indices that ``output.logits`` is scored against.
        recipe: ``() -> Recipe``: the default recipe (``protozoo train`` starts from it).
    """

    forward: Callable[[nn.Module, Batch], Any]
    loss: Callable[..., tuple[Tensor, dict[str, float]]]
    targets: Callable[[Batch], Tensor]
    recipe: Callable[[], Recipe]


def task_for(model: nn.Module) -> Task:
    """The training adapter of the model's family."""
    family = family_of(model)

    def forward(wrapped: nn.Module, batch: Batch, perturb=None) -> Any:
        inputs = family.model_inputs(batch)
        if perturb is not None:  # images (B, C, H, W) or views (B, V, C, H, W), not other inputs
            inputs = [perturb(x) if torch.is_tensor(x) and x.is_floating_point() and x.ndim >= 4 else x for x in inputs]
        return wrapped(*inputs)

    return Task(
        forward=forward, loss=family.resolved("loss"), targets=family.resolved("targets"), recipe=family.default_recipe
    )
