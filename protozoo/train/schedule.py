"""The ProtoPNet training schedule as declared phases, and the recipe that holds it.

A recipe is data: printed at the start of a run, saved beside its checkpoints as ``recipe.json``.
Its :meth:`Recipe.plan` unrolls into a flat list of steps (train epochs in a phase, pushes), so a
resumed run knows exactly where it is.

:meth:`Recipe.paper` is the reference code's schedule (cfchen-duke/ProtoPNet ``main.py`` and
``settings.py``) step for step. The default :class:`Recipe` differs from it in these ways, each a
field (``Recipe.paper()`` sets the reference's value):

- push: the default's ``push_start=10`` pushes after 10, 20, 30 warm + joint epochs; the
  reference pushes after epoch *index* 10, 20, ... (``epoch >= push_start and epoch % 10 == 0``),
  i.e. after 11, 21, 31 epochs: one epoch later (``push_start=11``). The default also pushes
  after the last epoch (``push_at_end``); the reference only on schedule.
- learning-rate decay: the reference steps its joint ``StepLR`` *before* each joint epoch, so its
  joint epoch j (from 0) trains at ``lr * 0.1 ** ((j + 1) // 5)``: the first decay at the 5th joint
  epoch; the default decays after 5 joint epochs, from the 6th (``lr_step_offset`` 0 vs 1).
- BatchNorm statistics: the default keeps the running statistics of BatchNorm layers whose
  parameters a phase freezes (the backbone in warm and last-layer epochs: a pushed prototype stays
  an exact latent patch of its source through the last-layer epochs); the reference's
  ``model.train()`` updates every BatchNorm's statistics in every phase
  (``freeze_norm_stats``).
- last-layer epochs: the reference runs none with the ``linear`` similarity
  (``Recipe.paper(similarity="linear")`` sets ``last_layer_epochs=0``); the default runs them for
  every similarity.
- length and batch: the default trains 30 warm + joint epochs on batches of 32; the reference's
  ``settings.py`` 1000 epochs on batches of 80.
"""

from __future__ import annotations

import json
import math
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
DEFAULT_LR = {
    "backbone": 1e-4,
    "global_head": 1e-3,
    "add_on": 3e-3,
    "prototypes": 3e-3,
    "last_layer": 1e-4,
    "readout": 1e-2,
}
DEFAULT_WARM_LR = {"add_on": 3e-3, "prototypes": 3e-3, "readout": 1e-2}
# Adam weight decay per parameter group (the reference's: 1e-3 on the features and add-on layers);
# groups left out (prototypes, last layer, readout) are not decayed.
DEFAULT_WEIGHT_DECAY = {"backbone": 1e-3, "add_on": 1e-3, "global_head": 1e-3}


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
        lr_step_offset: Joint scheduler steps taken before the first joint epoch: joint epoch j
            (from 0) trains at ``lr * lr_gamma ** ((j + lr_step_offset) // lr_step)``. 0: the
            first decay after ``lr_step`` joint epochs; 1: the reference code's order (it steps
            the scheduler before each joint epoch), one joint epoch earlier.
        freeze_norm_stats: Normalisation layers whose parameters a phase freezes run in eval
            mode and keep their running statistics (the backbone's in warm and last-layer
            epochs). False: every layer is in train mode in every training epoch, as the
            reference's ``model.train()``; the latent space then moves during the last-layer
            epochs and pushed prototypes stop being exact patches of their sources.
        weight_decay: Adam weight decay per parameter group (``{"backbone": 1e-3, "add_on": 1e-3,
            "global_head": 1e-3}``; groups left out are not decayed). A number sets it for those
            three groups.
        batch_size: Images per step (per process under torchrun).
        loss: Loss coefficients.
        unique_source: Push diversity: ``none``, ``per_class`` or ``global``.
        push_foreground: Push takes patches only from foreground cells (the data's
            ``foreground`` mask, else the automatic rule of :mod:`protozoo.foreground`), so no
            prototype is background; on in the medical families' recipes.
        push_lesions: Where the data has lesion masks, push takes a lesion-bearing image's
            patches only from its lesion cells (``push_prototypes(lesions=True)``).
        input_noise: Std of clipped Gaussian noise added to the normalised training inputs
            (clipped at ``1.25 * input_noise``; 0: none), drawn from a generator seeded per
            epoch: the perturbation of Huang et al.'s stability score (std 0.2, clip 0.25) as an
            augmentation, so prototypes learn to fire on the same part under noise.
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
    lr_step_offset: int = 0
    freeze_norm_stats: bool = True
    weight_decay: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHT_DECAY))
    batch_size: int = 32
    loss: LossWeights = field(default_factory=LossWeights)
    unique_source: str = "none"
    push_foreground: bool = False
    push_lesions: bool = False
    input_noise: float = 0.0
    seed: int = 0

    def __post_init__(self):
        self._check_values()
        if isinstance(self.loss, dict):
            self.loss = LossWeights(**self.loss)
        if self.loss.noise_consistency and not self.input_noise:
            raise ValueError(
                f"loss noise_consistency={self.loss.noise_consistency} compares clean and noisy inputs, but the "
                "recipe's input_noise is 0: set input_noise (e.g. 0.2, the stability score's noise) or "
                "noise_consistency=0"
            )
        # A partial learning-rate table keeps the defaults of the groups it does not name.
        self.lr = DEFAULT_LR | dict(self.lr)
        self.warm_lr = DEFAULT_WARM_LR | dict(self.warm_lr)
        if isinstance(self.weight_decay, (int, float)):
            self.weight_decay = {group: float(self.weight_decay) for group in DEFAULT_WEIGHT_DECAY}
        if self.unique_source not in ("none", "per_class", "global"):
            raise ValueError(f"unique_source must be 'none', 'per_class' or 'global', not {self.unique_source!r}")
        if not 0 <= self.warm_epochs <= self.epochs:
            raise ValueError(f"warm_epochs={self.warm_epochs} must lie between 0 and epochs={self.epochs}")

    def _check_values(self) -> None:
        """Raise a ValueError naming the field for a value the plan cannot mean (``epochs=0``, ``lr="fast"``)."""
        least = {
            "epochs": 1,
            "push_every": 1,
            "batch_size": 1,
            "lr_step": 1,
            "global_epochs": 0,
            "warm_epochs": 0,
            "push_start": 0,
            "last_layer_epochs": 0,
            "lr_step_offset": 0,
        }
        for name, low in least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"recipe field {name} must be an integer >= {low}, not {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"recipe field seed must be an integer, not {self.seed!r}")
        for name in ("push_at_end", "freeze_norm_stats"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"recipe field {name} must be true or false, not {getattr(self, name)!r}")
        if not _is_number(self.lr_gamma) or not self.lr_gamma > 0:
            raise ValueError(f"recipe field lr_gamma must be a number > 0, not {self.lr_gamma!r}")
        if not _is_number(self.input_noise) or not self.input_noise >= 0:
            raise ValueError(
                f"recipe field input_noise must be a number >= 0 (the noise std; 0 for none), not {self.input_noise!r}"
            )
        for name in ("lr", "warm_lr", "weight_decay"):
            table = getattr(self, name)
            if name == "weight_decay" and _is_number(table):
                table = {"(all)": table}
            if not isinstance(table, dict):
                raise ValueError(f"recipe field {name} must be a table of parameter group -> number, not {table!r}")
            for group, value in table.items():
                if not _is_number(value) or value < 0:
                    raise ValueError(f"recipe field {name}[{group!r}] must be a number >= 0, not {value!r}")

    @classmethod
    def paper(cls, *, similarity: str = "log", **overrides: Any) -> Recipe:
        """The reference code's recipe (cfchen-duke/ProtoPNet ``settings.py`` and ``main.py``'s
        loop), step for step.

        1000 epochs: 5 warm (add-on layers and prototypes at 3e-3), then joint (backbone 1e-4,
        add-on and prototypes 3e-3, x0.1 every 5 joint epochs counted from the scheduler step
        before the first one); a push after 11, 21, 31, ... epochs (the reference's epoch
        indices 10, 20, ...) each followed by 20 last-layer epochs at 1e-4 (none for the
        ``linear`` similarity); no push after the last epoch unless scheduled; every
        BatchNorm in train mode in every phase; batches of 80. The losses are the default
        :class:`~protozoo.train.losses.LossWeights` (1, 0.8, -0.08, 1e-4), as the reference's.

        Args:
            similarity: The model's similarity (``model.config.similarity``): the reference skips
                the last-layer epochs when it is ``"linear"``.
            **overrides: Fields to change (e.g. ``epochs=31``); the rest stay the reference's.
        """
        reference = dict(
            epochs=1000, warm_epochs=5, push_start=11, push_every=10, push_at_end=False,
            last_layer_epochs=0 if similarity == "linear" else 20, lr=dict(DEFAULT_LR), warm_lr=dict(DEFAULT_WARM_LR),
            lr_step=5, lr_gamma=0.1, lr_step_offset=1, freeze_norm_stats=False, weight_decay=1e-3, batch_size=80,
        )  # fmt: skip
        return cls(**(reference | overrides))

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
