"""Interpretability and classification evaluators of prototype models.

    from protozoo.evaluate import consistency, stability, localization
    consistency(model, parts_dataset).score       # Huang et al. 2023, 0-100
    stability(model, parts_dataset).score         # 0-100
    localization(model, lesion_dataset).iou       # against lesion masks, 0-1

Every evaluator reads a model through three adapters: :func:`prototype_maps` (``{view: (B, P, H,
W)}``), :func:`model_logits` and :func:`own_prototypes` (which prototypes each image's class
owns), so a new head family plugs in by extending them; ProtoPNet, BRAIxProtoPNet++, the
multi-view CC/MLO and the lesion heads are covered. See docs/evaluate.md.
"""

from protozoo.evaluate._parts import model_logits, own_prototypes, prototype_maps
from protozoo.evaluate.classification import (
    ClassificationResult,
    binary_auroc,
    classification,
    classification_metrics,
    lesion_aurocs,
    macro_auroc,
)
from protozoo.evaluate.consistency import ConsistencyResult, consistency
from protozoo.evaluate.localization import (
    LocalizationResult,
    localization,
    localization_from_maps,
    mask_localization,
)
from protozoo.evaluate.posthoc import gradcam, posthoc_localization, posthoc_maps
from protozoo.evaluate.prototype_stats import PrototypeStats, duplicate_pairs, prototype_stats
from protozoo.evaluate.stability import StabilityResult, consistency_and_stability, gaussian_noise, stability

__all__ = [
    "ClassificationResult",
    "ConsistencyResult",
    "LocalizationResult",
    "PrototypeStats",
    "StabilityResult",
    "binary_auroc",
    "classification",
    "classification_metrics",
    "lesion_aurocs",
    "consistency",
    "consistency_and_stability",
    "duplicate_pairs",
    "gaussian_noise",
    "gradcam",
    "localization",
    "localization_from_maps",
    "mask_localization",
    "macro_auroc",
    "model_logits",
    "own_prototypes",
    "posthoc_localization",
    "posthoc_maps",
    "prototype_maps",
    "prototype_stats",
    "stability",
]
