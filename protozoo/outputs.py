"""What a prototype model's forward pass returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ProtoOutput:
    """Output of a ProtoPNet-style head.

    Attributes:
        logits: (B, num_classes).
        similarities: (B, P) max-pooled similarity of each prototype to the image; higher = more alike.
        min_distances: (B, P) min-pooled distance of each prototype to the image's latent patches.
        distance_maps: (B, P, H, W) distance of each prototype to each latent patch.
    """

    logits: Tensor
    similarities: Tensor
    min_distances: Tensor
    distance_maps: Tensor


@dataclass
class BRAIxOutput(ProtoOutput):
    """Output of BRAIxProtoPNet++: the ensemble and each branch.

    Attributes:
        logits: (B, K) log of the ensemble probabilities (the mean of the two branches'
            softmax), so ``argmax`` and ``softmax`` give the ensemble's prediction.
        global_logits: (B, K) of the global (pooled CNN) branch.
        prototype_logits: (B, K) of the prototype branch.
        probabilities: (B, K) ensemble probabilities.
    """

    global_logits: Tensor | None = None
    prototype_logits: Tensor | None = None
    probabilities: Tensor | None = None


@dataclass
class MultiViewOutput(ProtoOutput):
    """Output of the multi-view (CC/MLO) head: one breast-level prediction and per-view evidence.

    View index 0 is CC, 1 is MLO. Entries of a missing view are 0 in every ``view_*`` tensor and
    in ``cooccurrence``; read ``views_present`` before reading them.

    Attributes:
        logits: (B, K) breast-level logits.
        similarities: (B, P) max over the present views of each prototype's similarity.
        min_distances: (B, P) min over the present views of each prototype's min distance.
        distance_maps: (B, P, H, W) of the CC view (of the MLO view where CC is missing).
        view_similarities: (B, 2, P) max-pooled similarity per view.
        view_min_distances: (B, 2, P) min-pooled distance per view.
        view_distance_maps: (B, 2, P, H, W) distance maps per view.
        cooccurrence: (B, P) cross-view co-occurrence score of each prototype (0 without both views).
        views_present: (B, 2) bool, which views each breast has.
        consistency: Scalar SimSiam consistency loss over the breasts with both views; None if none has.
    """

    view_similarities: Tensor | None = None
    view_min_distances: Tensor | None = None
    view_distance_maps: Tensor | None = None
    cooccurrence: Tensor | None = None
    views_present: Tensor | None = None
    consistency: Tensor | None = None


@dataclass
class LesionOutput(ProtoOutput):
    """Output of the lesion-linked head: a diagnosis computed from lesion evidence only.

    Prototype classes are the lesion types: ``similarities`` etc. are those of the lesion prototypes.

    Attributes:
        logits: (B, K) diagnosis logits, a function of ``lesion_logits`` alone.
        lesion_logits: (B, L) presence logit of each lesion type (sigmoid -> probability).
    """

    lesion_logits: Tensor | None = None
