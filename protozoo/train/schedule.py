"""The ProtoPNet training schedule as declared phases, and the recipe that holds it.

A recipe is data: printed at the start of a run, saved beside its checkpoints as ``recipe.json``.
Its :meth:`Recipe.plan` unrolls into a flat list of steps (train epochs in a phase, pushes), so a
resumed run knows exactly where it is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from protozoo.train.losses import LossWeights


@dataclass(frozen=True)
class Phase:
    """One kind of training epoch: which named parameter groups train.

    Attributes:
        name: ``global``, ``warm``, ``joint`` or ``last_layer``.
        trainable: Parameter-group names (``model.parameter_groups()`` keys) that get gradients.
    """

    name: str
    trainable: tuple[str, ...]


PHASES = {
    # BRAIxProtoPNet++ stage 1: the backbone and the global branch alone.
    "global": Phase("global", ("backbone", "global_head")),
    # Groups a model lacks are skipped: ProtoPNet has no global_head, BRAIx trains it jointly.
    # "readout" is a detector's calibration that must train with every phase (the lesion head's
    # lesion weights and biases, which turn prototype evidence into lesion probabilities).
    "warm": Phase("warm", ("add_on", "prototypes", "readout")),
    "joint": Phase("joint", ("backbone", "global_head", "add_on", "prototypes", "readout")),
    "last_layer": Phase("last_layer", ("last_layer", "readout")),
}
DEFAULT_LR = {"backbone": 1e-4, "global_head": 1e-3, "add_on": 3e-3, "prototypes": 3e-3, "last_layer": 1e-4,
              "readout": 1e-2}
DEFAULT_WARM_LR = {"add_on": 3e-3, "prototypes": 3e-3, "readout": 1e-2}


@dataclass(frozen=True)
class Step:
    """One step of a run's plan: a training epoch in a phase, or a push."""

    kind: str  # "train" | "push"
    phase: str = ""
    epoch: int = 0  # index of the training epoch (counting every phase), for logs and schedulers


@dataclass
class Recipe:
    """How to train a ProtoPNet (defaults: Chen et al. 2019's CUB recipe, shortened where noted).

    Attributes:
        global_epochs: Epochs before the warm phase that train only the backbone and the global
            branch (BRAIxProtoPNet++ stage 1; 0 for models without a global branch).
        epochs: Warm + joint epochs.
        warm_epochs: First epochs that train only the add-on layers and prototypes.
        push_start: First push after this many warm + joint epochs.
        push_every: Then push every this many epochs.
        push_at_end: Push after the last epoch too, so the final prototypes are real patches.
        last_layer_epochs: Last-layer-only epochs after each push (20 in the paper).
        lr: Learning rates per parameter group (joint: backbone 1e-4, add-on and prototypes 3e-3;
            the global branch 1e-3; a detector readout 1e-2). Groups left out keep these defaults.
        warm_lr: Learning rates of the warm phase.
        lr_step: Joint-phase step decay: multiply the joint learning rates by ``lr_gamma`` every
            ``lr_step`` joint epochs.
        lr_gamma: The decay factor.
        weight_decay: Adam weight decay of the backbone and add-on layers.
        batch_size: Images per step (per process under torchrun).
        loss: Loss coefficients.
        unique_source: Push diversity: ``none``, ``per_class`` or ``global``.
        seed: Seeds model init order, shuffling and augmentation.
    """

    global_epochs: int = 0
    epochs: int = 30
    warm_epochs: int = 5
    push_start: int = 10
    push_every: int = 10
    push_at_end: bool = True
    last_layer_epochs: int = 20
    lr: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LR))
    warm_lr: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WARM_LR))
    lr_step: int = 5
    lr_gamma: float = 0.1
    weight_decay: float = 1e-3
    batch_size: int = 32
    loss: LossWeights = field(default_factory=LossWeights)
    unique_source: str = "none"
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.loss, dict):
            self.loss = LossWeights(**self.loss)
        # A partial learning-rate table keeps the defaults of the groups it does not name.
        self.lr = DEFAULT_LR | dict(self.lr)
        self.warm_lr = DEFAULT_WARM_LR | dict(self.warm_lr)
        if self.unique_source not in ("none", "per_class", "global"):
            raise ValueError(f"unique_source must be 'none', 'per_class' or 'global', not {self.unique_source!r}")
        if not 0 <= self.warm_epochs <= self.epochs:
            raise ValueError(f"warm_epochs={self.warm_epochs} must lie between 0 and epochs={self.epochs}")

    def plan(self) -> list[Step]:
        """The whole run, step by step: warm/joint epochs, pushes, last-layer epochs after each push."""
        steps: list[Step] = [Step("train", "global", epoch) for epoch in range(self.global_epochs)]
        epoch = self.global_epochs
        for main_epoch in range(self.epochs):
            phase = "warm" if main_epoch < self.warm_epochs else "joint"
            steps.append(Step("train", phase, epoch))
            epoch += 1
            done = main_epoch + 1
            scheduled = done >= self.push_start and (done - self.push_start) % self.push_every == 0
            if scheduled or (self.push_at_end and done == self.epochs):
                steps.append(Step("push", "push", epoch))
                for _ in range(self.last_layer_epochs):
                    steps.append(Step("train", "last_layer", epoch))
                    epoch += 1
        return steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Read a recipe from ``.json`` (or ``.yaml`` / ``.yml`` when PyYAML is installed)."""
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml  # optional: only for YAML recipes

            return cls.from_dict(yaml.safe_load(text))
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        """A readable summary: the recipe as JSON and its plan in phases."""
        runs: list[str] = []
        for step in self.plan():
            label = step.phase if step.kind == "train" else "PUSH"
            if runs and runs[-1].split(" x")[0] == label and label != "PUSH":
                name, count = runs[-1].rsplit(" x", 1)
                runs[-1] = f"{name} x{int(count) + 1}"
            else:
                runs.append(label if label == "PUSH" else f"{label} x1")
        return json.dumps(self.to_dict(), indent=2) + "\nplan: " + " -> ".join(runs)
