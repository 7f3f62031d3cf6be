"""Training: ProtoPNet losses, the phase schedule, checkpointed ``fit``, DDP under torchrun."""

from protozoo.train.loop import FitResult, fit
from protozoo.train.losses import LossWeights, protopnet_loss
from protozoo.train.schedule import PHASES, Phase, Recipe, Step

__all__ = ["PHASES", "FitResult", "LossWeights", "Phase", "Recipe", "Step", "fit", "protopnet_loss"]
