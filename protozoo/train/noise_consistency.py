"""Noise consistency: a prototype's map should not move when the input gets the stability score's noise.

Huang et al.'s stability score (:func:`protozoo.evaluate.stability`) asks whether the peak of each
own-class prototype's map lands on the same parts after clipped Gaussian noise is added to the
input. ``Recipe.input_noise`` trains on such noisy inputs; ``LossWeights.noise_consistency`` adds
what augmentation alone does not ask for: on every training batch, the spatial distribution of each
own prototype's activation on the noisy input (a softmax over the cells) should equal the one on
the clean input (the target, computed without gradient)::

    cost = mean over (image, own prototype) of KL(softmax(a_clean / T) || softmax(a_noisy / T))

(a consistency regularizer in the manner of semi-supervised and robust training). It needs the
clean forward too, so a training epoch with it costs about 1.3x one without.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def noise_consistency_cost(clean: Tensor, noisy: Tensor, own: Tensor, temperature: float = 1.0) -> Tensor:
    """The cost above.

    Args:
        clean: (B, P, h, w) activation maps of the clean inputs (treated as constants).
        noisy: (B, P, h, w) activation maps of the same inputs with noise.
        own: (B, P) bool, the (image, prototype) pairs scored.
        temperature: Softmax temperature over the cells.

    Returns:
        A scalar (0 when no pair is own).
    """
    target = F.log_softmax(rearrange(clean.detach(), "b p h w -> b p (h w)") / temperature, dim=-1)
    moved = F.log_softmax(rearrange(noisy, "b p h w -> b p (h w)") / temperature, dim=-1)
    kl = (target.exp() * (target - moved)).sum(dim=-1)  # (B, P)
    own = own.to(kl.device)
    return (kl * own).sum() / own.sum().clamp_min(1)


def with_noise_consistency(model, task, wrapped, batch: dict, output, weights, loss: Tensor, terms: dict) -> Tensor:
    """``loss`` plus ``weights.noise_consistency`` x the cost between ``output`` (the forward of the
    noisy batch) and a no-gradient forward of the clean batch; ``terms`` gets the cost."""
    from protozoo.evaluate._parts import own_prototypes

    with torch.no_grad():
        clean = task.forward(wrapped, batch)
    activation = model.head.activation
    cost = noise_consistency_cost(
        activation(clean.distance_maps), activation(output.distance_maps), own_prototypes(model, batch, "true")
    )
    terms["noise_consistency"] = cost.item()
    return loss + weights.noise_consistency * cost
