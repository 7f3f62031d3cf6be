"""Shallow-deep feature alignment (SDFA; Huang et al., ICCV 2023, the method that comes with the
consistency and stability scores of :mod:`protozoo.evaluate`).

Deep feature maps are spatially blurred: neighbouring cells of a stride-16 map see almost the same
receptive field, so a prototype's similarity map is flat around its peak and a little input noise
moves the peak to another part. SDFA asks the deep features to keep the spatial similarity
structure of shallow ones: at the peak cell of each own-class prototype, the cosine similarity of
that cell to every other cell in the backbone's deep features should match the same row in the
shallow features (a stride-4 stage, cut into one block per deep cell and detached), up to a
margin::

    cost = mean over (image, own prototype, cell) of relu(|S_deep[m, :] - S_shallow[m, :]| - threshold)

with m the prototype's peak cell. ``LossWeights.alignment`` weighs it (0.5 and threshold 0.1 in the
authors' recipe); it applies in the phases that train the backbone (``joint``), where its gradient
can reach the deep features. :class:`FeatureTap` reads the two feature maps from the forward pass
itself (forward hooks), so no second forward is run.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from protozoo.backbones import Backbone

__all__ = ["FeatureTap", "alignment_cost", "shallow_module"]


def shallow_module(backbone: Backbone, stage: int) -> nn.Module:
    """The module of ``backbone`` whose output is timm feature stage ``stage`` (e.g. 1: stride 4)."""
    info = backbone.body.feature_info
    stages = len(info.info)
    if not -stages <= stage < stages:
        raise ValueError(f"alignment_stage={stage} is not a feature stage of {backbone.name} (0..{stages - 1})")
    name = info.info[stage]["module"]
    modules = dict(backbone.body.named_modules())
    for candidate in (name, name.replace(".", "_"), f"body.{name}"):
        if candidate in modules:
            return modules[candidate]
    raise ValueError(
        f"alignment_stage={stage}: {backbone.name}'s stage {stage} ({name}) is past the feature stage the "
        f"model uses ({backbone.stage}); choose a shallower alignment_stage"
    )


class FeatureTap:
    """Captures a model's shallow (stage ``stage``) and deep (its backbone's output) features during a
    forward pass: ``with FeatureTap(model, 1) as tap: out = model(x)``, then ``tap.shallow``, ``tap.deep``."""

    def __init__(self, model: nn.Module, stage: int):
        backbone = getattr(model, "backbone", None)
        if not isinstance(backbone, Backbone):
            raise ValueError(
                f"feature alignment needs a model with one protozoo Backbone; {type(model).__name__} has none"
            )
        self.modules = (shallow_module(backbone, stage), backbone)
        self.shallow: Tensor | None = None
        self.deep: Tensor | None = None
        self._handles: list = []

    def __enter__(self) -> FeatureTap:
        self.shallow = self.deep = None  # one tap serves every batch of a pass: nothing left from the last

        def keep(slot: str):
            def hook(module, inputs, output):
                setattr(self, slot, output[-1] if isinstance(output, (list, tuple)) else output)

            return hook

        self._handles = [m.register_forward_hook(keep(slot)) for m, slot in zip(self.modules, ("shallow", "deep"))]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def cell_similarity(features: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, hw, hw) cosine similarity of every cell to every cell."""
    unit = F.normalize(rearrange(features, "b c h w -> b (h w) c"), dim=-1)
    return unit @ unit.transpose(1, 2)


def shallow_blocks(shallow: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, C, H, W) shallow features -> (B, C k k, h, w): each deep cell's k x k block of shallow cells
    stacked into one vector (space-to-depth, k = H // h; resampled first when H is not a multiple)."""
    h, w = size
    k = max(1, shallow.shape[-2] // h)
    if tuple(shallow.shape[-2:]) != (h * k, w * k):
        shallow = F.adaptive_avg_pool2d(shallow, (h * k, w * k))
    return rearrange(shallow, "b c (h p) (w q) -> b (c p q) h w", p=k, q=k)


def alignment_cost(activations: Tensor, own: Tensor, shallow: Tensor, deep: Tensor, threshold: float) -> Tensor:
    """SDFA's cost (see the module doc).

    Args:
        activations: (B, P, h, w) prototype activation maps (higher = more similar); only their
            arg-max cell is used.
        own: (B, P) bool, the prototypes whose peak rows are aligned (each image's own class).
        shallow: (B, Cs, Hs, Ws) shallow features (detached here: they are the target).
        deep: (B, Cd, h, w) the backbone's deep features.
        threshold: The margin under which a difference costs nothing.

    Returns:
        A scalar: the mean over own (image, prototype) pairs and cells (0 when no pair is own).
    """
    size = tuple(deep.shape[-2:])
    if tuple(activations.shape[-2:]) != size or len(activations) != len(deep):
        raise ValueError(
            f"feature alignment: activation maps {tuple(activations.shape)} and deep features "
            f"{tuple(deep.shape)} do not share images and cells (a multi-view model runs its backbone on "
            "every view at once; alignment supports single-view models)"
        )
    deep_sim = cell_similarity(deep)  # (B, hw, hw)
    shallow_sim = cell_similarity(shallow_blocks(shallow.detach(), size))  # (B, hw, hw)
    peak = rearrange(activations, "b p h w -> b p (h w)").argmax(dim=-1)  # (B, P)
    rows = peak[..., None].expand(-1, -1, deep_sim.shape[-1])  # (B, P, hw)
    gap = (deep_sim.gather(1, rows) - shallow_sim.gather(1, rows)).abs()  # (B, P, hw)
    cost = F.relu(gap - threshold).mean(dim=-1)  # (B, P)
    own = own.to(cost.device)
    return (cost * own).sum() / own.sum().clamp_min(1) if own.any() else cost.sum() * 0.0


def with_alignment(model, output, batch: dict, weights, loss: Tensor, terms: dict, tap: FeatureTap) -> Tensor:
    """``loss`` plus ``weights.alignment`` x the SDFA cost of the tapped forward (``terms`` gets it)."""
    from protozoo.evaluate._parts import own_prototypes

    if tap.shallow is None or tap.deep is None:
        raise RuntimeError("feature alignment: the forward pass did not run the model's backbone")
    activations = model.head.activation(output.distance_maps)  # (B, P, h, w)
    own = own_prototypes(model, batch, "true")  # (B, P)
    cost = alignment_cost(activations, own, tap.shallow, tap.deep, weights.alignment_threshold)
    terms["alignment"] = cost.item()
    return loss + weights.alignment * cost


def tap_for(model, weights, phase: str) -> FeatureTap | None:
    """A :class:`FeatureTap` when the loss has an alignment term and ``phase`` trains the backbone
    and the prototypes together (``joint``); else None."""
    from protozoo.train.schedule import PHASES

    trainable = PHASES[phase].trainable if phase in PHASES else ()
    if not weights.alignment or not {"backbone", "prototypes"} <= set(trainable):
        return None
    return FeatureTap(model, weights.alignment_stage)
