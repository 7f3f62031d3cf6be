"""ProtoPNet's training objective (Chen et al. 2019): cross-entropy + cluster + separation + L1.

All terms take the model's forward output; none needs another forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


@dataclass
class LossWeights:
    """Coefficients of the loss terms; the defaults are the paper's (1, 0.8, -0.08, 1e-4).

    Attributes:
        cross_entropy: Weight of the classification loss.
        cluster: Weight of the cluster cost (pulls each image near a prototype of its class).
        separation: Weight of the separation cost; negative, so other classes' prototypes are pushed away.
        l1: Weight of the L1 penalty on last-layer connections to wrong classes (last-layer phase).
        orthogonality: Weight of the within-class prototype orthogonality penalty (0 = off).
        distillation: Weight of BRAIxProtoPNet++'s distillation hinge (global -> prototype branch).
        distillation_margin: Its margin.
        global_cross_entropy: Weight of BRAIxProtoPNet++'s global-branch cross-entropy.
        diversity: Weight of the diverse-prototype head's within-class similarity penalty.
        diversity_threshold: Cosine similarity above which two prototypes of a class are penalised.
        consistency: Weight of the multi-view head's SimSiam consistency loss between CC and MLO.
        lesion: Weight of the lesion head's multi-label BCE on the lesion logits.
        fine_annotation: Weight of IAIA-BL's fine-annotation loss (Barnett et al. 2021) on items
            with a lesion ``mask``: a prototype's activation outside the lesion on images of its
            class, and anywhere on images of other classes (0 = off; items without a mask are
            not penalised). See :func:`fine_annotation_cost`.
        foreground_pooling: Cluster and separation min-pool only over foreground cells (the
            batch's ``foreground``, else the automatic rule of :mod:`protozoo.foreground`), so
            no class is explained by matching background.
        foreground_separation: With ``foreground_pooling``, the separation cost pools over the
            foreground too (True, as before); False keeps every cell there, so a prototype that
            matches the background (which every class shares) is pushed away wherever it does,
            while the cluster cost still pulls prototypes to the object.
        lesion_pooling: On images with a lesion ``mask``, the cluster cost min-pools over the
            lesion cells only (:func:`protozoo.foreground.lesion_cells`): an image's own-class
            prototype must be near a patch of its finding, not of tissue every class shares.
        alignment: Weight of the shallow-deep feature alignment of Huang et al. 2023 (SDFA,
            :mod:`protozoo.train.alignment`; 0 = off, 0.5 in the authors' recipe), in the phases
            that train the backbone and the prototypes together: sharper, steadier prototype maps.
        alignment_threshold: Its margin (0.1 in the authors' recipe).
        alignment_stage: The backbone feature stage (timm index) of the shallow features (1: stride 4).
        noise_consistency: Weight of the KL between each own prototype's spatial activation
            distribution on the clean and on the noisy training input
            (:mod:`protozoo.train.noise_consistency`; needs ``Recipe.input_noise``; 0 = off).
        unique_peak: Weight of the margin between each own prototype's peak and its best rival
            outside a window around it (:mod:`protozoo.train.unique_peak`; 0 = off): one clear
            peak, so input noise does not make it jump to a far-away look-alike.
        unique_peak_margin: That margin, in the units of the model's activation.
        unique_peak_radius: Half side, in latent cells, of the window around the peak where no
            rival is sought.
    """

    cross_entropy: float = 1.0
    cluster: float = 0.8
    separation: float = -0.08
    l1: float = 1e-4
    orthogonality: float = 0.0
    distillation: float = 1.0
    distillation_margin: float = 0.2
    global_cross_entropy: float = 1.0
    diversity: float = 0.1
    diversity_threshold: float = 0.8
    consistency: float = 0.1
    lesion: float = 1.0
    fine_annotation: float = 0.0
    foreground_pooling: bool = False
    foreground_separation: bool = True
    lesion_pooling: bool = False
    alignment: float = 0.0
    alignment_threshold: float = 0.1
    alignment_stage: int = 1
    noise_consistency: float = 0.0
    unique_peak: float = 0.0
    unique_peak_margin: float = 1.0
    unique_peak_radius: int = 2

    def __post_init__(self):
        radius = self.unique_peak_radius
        if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
            raise ValueError(f"loss unique_peak_radius must be an integer >= 0 (latent cells), not {radius!r}")
        if not self.unique_peak_margin > 0:
            raise ValueError(f"loss unique_peak_margin must be > 0, not {self.unique_peak_margin!r}")


def own_class_mask(prototype_identity: Tensor, labels: Tensor) -> Tensor:
    """(P, K) prototype classes, (B,) labels -> (B, P) True where the prototype is of the image's class."""
    return prototype_identity[:, labels].T.bool()


def cluster_cost(min_distances: Tensor, own: Tensor) -> Tensor:
    """Mean over images of the smallest min-distance to a prototype of the image's class.

    Args:
        min_distances: (B, P).
        own: (B, P) mask of own-class prototypes.
    """
    return min_distances.masked_fill(~own, float("inf")).amin(dim=1).mean()


def separation_cost(min_distances: Tensor, own: Tensor) -> Tensor:
    """Mean over images of the smallest min-distance to a prototype of another class."""
    return min_distances.masked_fill(own, float("inf")).amin(dim=1).mean()


def l1_wrong_class(last_layer_weight: Tensor, prototype_identity: Tensor) -> Tensor:
    """L1 norm of the last layer's (K, P) weights from prototypes to classes they do not belong to."""
    return (last_layer_weight * (1 - prototype_identity.T)).abs().sum()


def orthogonality(prototypes: Tensor, prototypes_per_class: int) -> Tensor:
    """Sum over classes of ||P_c P_c^T - I||_F^2 for the unit-normalised prototypes of class c."""
    unit = rearrange(F.normalize(prototypes, dim=1), "(k m) d -> k m d", m=prototypes_per_class)
    gram = unit @ unit.transpose(1, 2)  # (K, m, m)
    eye = torch.eye(prototypes_per_class, device=prototypes.device)
    return (gram - eye).pow(2).sum()


def foreground_min_distances(output, batch: dict) -> Tensor:
    """(B, P) min-distances pooled over the foreground cells of each image only."""
    from protozoo.foreground import batch_foreground_cells

    maps = output.distance_maps  # (B, P, H, W)
    cells = batch_foreground_cells(batch, tuple(maps.shape[-2:])).to(maps.device)  # (B, H, W)
    return maps.masked_fill(~cells[:, None], float("inf")).flatten(2).amin(dim=2)


def lesion_min_distances(output, batch: dict, pooled: Tensor) -> Tensor:
    """(B, P) min-distances over the lesion cells of lesion-bearing images (``pooled`` elsewhere)."""
    from protozoo.foreground import lesion_cells

    maps = output.distance_maps  # (B, P, H, W)
    cells = lesion_cells(batch, tuple(maps.shape[-2:]))
    if cells is None:
        return pooled
    cells = cells.to(maps.device)  # (B, H, W), every cell on images without a lesion
    has = ~cells.flatten(1).all(dim=1)  # (B,) images whose cells were narrowed to a lesion
    on_lesion = maps.masked_fill(~cells[:, None], float("inf")).flatten(2).amin(dim=2)
    return torch.where(has[:, None], on_lesion, pooled)


def lesion_masks_of(batch: dict) -> Tensor | None:
    """(B, 1 or L, H, W) float lesion masks of a single-view batch, or None when it has none."""
    masks = batch.get("mask")
    if masks is None:
        return None
    masks = torch.as_tensor(masks).float()
    return masks[:, None] if masks.ndim == 3 else masks


def fine_annotation_cost(activations: Tensor, masks: Tensor, own: Tensor) -> Tensor:
    """IAIA-BL's fine-annotation loss (Barnett et al., Nat. Mach. Intell. 2021), per (image, prototype).

    For a prototype of the image's class (``own``) on an image with a lesion: the RMS of its
    activation outside the lesion; for a prototype of another class: the RMS of its activation
    anywhere. Own-class prototypes on images without any lesion (a normal image: no annotation of
    where its class's evidence lies) are not penalised. Activations are upsampled bilinearly to
    the mask (pixel) size, as the paper multiplies the upsampled activation pattern by the mask.

    Args:
        activations: (B, P, h, w) prototype activation maps (higher = more similar).
        masks: (B, 1, H, W) lesion masks (united), or (B, P, H, W) the mask of each prototype's
            own lesion type; > 0.5 is lesion.
        own: (B, P) bool, the prototypes of each image's class(es).

    Returns:
        The mean over images and prototypes (a scalar).
    """
    size = tuple(masks.shape[-2:])
    if tuple(activations.shape[-2:]) != size:
        activations = F.interpolate(activations, size=size, mode="bilinear", align_corners=False)  # (B, P, H, W)
    lesion = (masks > 0.5).float()
    has_lesion = lesion.flatten(2).amax(dim=2) > 0  # (B, 1 or P)
    outside = torch.where(own[..., None, None], 1.0 - lesion, torch.ones_like(lesion))  # (B, P, H, W)
    rms = ((activations * outside).pow(2).flatten(2).mean(dim=2) + 1e-8).sqrt()  # (B, P)
    counted = ~own | has_lesion  # (B, P)
    return (rms * counted).sum() / rms.numel()


def protopnet_loss(
    model, output, batch: dict, weights: LossWeights, phase: str = "joint"
) -> tuple[Tensor, dict[str, float]]:
    """The weighted sum of the terms, and each term's value for logging.

    Args:
        model: The (unwrapped) ProtoPNet.
        output: Its :class:`~protozoo.outputs.ProtoOutput` on the batch.
        batch: The batch; ``batch["label"]`` (B,) class indices.
        weights: Loss coefficients; terms whose weight is 0 are not computed.
        phase: The schedule phase (every ProtoPNet phase uses the same objective; the L1 term
            only matters while the last layer trains).
    """
    labels = batch["label"]
    identity = model.head.prototype_identity  # (P, K)
    own = own_class_mask(identity, labels)
    terms: dict[str, Tensor] = {"cross_entropy": F.cross_entropy(output.logits, labels)}
    pooled = foreground_min_distances(output, batch) if weights.foreground_pooling else output.min_distances
    if weights.cluster:
        terms["cluster"] = cluster_cost(
            lesion_min_distances(output, batch, pooled) if weights.lesion_pooling else pooled, own
        )
    if weights.separation:
        terms["separation"] = separation_cost(pooled if weights.foreground_separation else output.min_distances, own)
    masks = lesion_masks_of(batch) if weights.fine_annotation else None
    if masks is not None:
        activations = model.head.activation(output.distance_maps)  # (B, P, H, W)
        terms["fine_annotation"] = fine_annotation_cost(activations, masks.to(activations.device), own)
    if weights.l1:
        terms["l1"] = l1_wrong_class(model.last_layer.weight, identity)
    if weights.orthogonality:
        terms["orthogonality"] = orthogonality(model.prototypes, model.config.prototypes_per_class)
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: value.item() for name, value in terms.items()}
