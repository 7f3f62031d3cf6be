"""One row per method of a trained pair: the evaluators' scores of its maps, its model's accuracy and
AUROC, captum's faithfulness, and the shortcut figures. Every number is an evaluator's output."""

from __future__ import annotations

import math
from typing import Any

import torch

from protozoo.benchmark.faithfulness import faithfulness
from protozoo.benchmark.maps import PROTOTYPE_MODEL, dataset_maps, explained_model
from protozoo.benchmark.models import TrainedPair, evaluation_split
from protozoo.benchmark.options import BenchmarkOptions
from protozoo.benchmark.shortcut import TaggedTest, prototypes_on_tag
from protozoo.evaluate.classification import classification
from protozoo.evaluate.localization import localization_from_maps, per_image_localization, per_image_pixel_scores

LOCALIZATION = ("pointing_game", "iou", "dice", "activation_precision")
PIXEL = ("explanation_precision", "explanation_recall", "explanation_f1", "energy")


def nanmean(values: torch.Tensor) -> float | None:
    """Mean over the defined (non-NaN) entries; None when there are none (JSON null)."""
    defined = values[~values.isnan()]
    return defined.mean().item() if len(defined) else None


def score_pair(pair: TrainedPair, options: BenchmarkOptions, methods: list[str]) -> dict[str, dict[str, Any]]:
    """``{method: row scores}`` of the methods asked for."""
    models = {"classifier": pair.classifier, "protopnet": pair.protopnet}
    accuracy = {name: classification(model, pair.test, batch_size=options.batch_size) for name, model in models.items()}
    tagged = _tagged(options, pair)
    tagged_accuracy = (
        {name: classification(model, tagged, batch_size=options.batch_size) for name, model in models.items()}
        if tagged is not None
        else {}
    )
    rows = {}
    for method in methods:
        which = explained_model(method)
        model = models[which]
        maps = dataset_maps(method, model, pair.test, batch_size=options.batch_size)
        located = localization_from_maps(maps.maps, maps.masks, threshold=options.threshold)
        pixel = per_image_pixel_scores(maps.maps, maps.masks, threshold=options.threshold)
        row: dict[str, Any] = {
            "model": which,
            "accuracy": accuracy[which].accuracy,
            "auroc": _num(accuracy[which].auroc),
            "balanced_accuracy": accuracy[which].balanced_accuracy,
            "evaluated": located.evaluated,
        }
        row |= {name: _num(getattr(located, name)) for name in LOCALIZATION}
        row |= {name: nanmean(pixel[name]) for name in PIXEL}
        row |= _faithfulness(method, model, maps, pair, options)
        if tagged is not None:
            row |= _shortcut(method, model, tagged, options, accuracy[which], tagged_accuracy[which])
            if which == PROTOTYPE_MODEL:
                row["prototypes_on_tag"] = prototypes_on_tag(pair.protopnet.provenance, pair.push)
        rows[method] = row
    return rows


def _tagged(options: BenchmarkOptions, pair: TrainedPair) -> TaggedTest | None:
    if not options.scores_shortcut:
        return None
    return TaggedTest(evaluation_split(options, None, tagged_raw=True), pair.eval_transform)


def _faithfulness(method: str, model, maps, pair: TrainedPair, options: BenchmarkOptions) -> dict[str, Any]:
    n = min(options.faithfulness_samples, len(pair.test))
    if n == 0:
        return {"infidelity": None, "max_sensitivity": None}
    items = [pair.test[i] for i in range(n)]
    device = next(model.parameters()).device
    images = torch.stack([item["image"] for item in items]).to(device)  # (n, C, H, W)
    labels = torch.as_tensor([int(item["label"]) for item in items], device=device)
    return faithfulness(method, model, images, labels, perturbations=options.perturbations, seed=options.seed)


def _shortcut(
    method: str, model, tagged: TaggedTest, options: BenchmarkOptions, untagged, tagged_result
) -> dict[str, Any]:
    """Explanation mass and peaks on the tag of tagged test images; accuracy with and without the tag."""
    maps = dataset_maps(method, model, tagged, batch_size=options.batch_size)
    energy = per_image_pixel_scores(maps.maps, maps.masks, threshold=options.threshold)["energy"]  # (N,)
    peaks = per_image_localization(maps.maps, maps.masks, threshold=options.threshold)["pointing_game"]
    # The tag is a few pixels (4 x 4 at 64 px) and a map a few cells: the mass share is bounded by
    # the tag's area share, so the lift (share of mass / share of area, 1 = no preference) is shown too.
    area = (maps.masks > 0.5).flatten(1).float().mean(dim=1)  # (N,)
    return {
        "tag_energy": nanmean(energy),
        "tag_lift": nanmean(energy / area),
        "tag_pointing_game": nanmean(peaks),
        "accuracy_tagged": tagged_result.accuracy,
        "accuracy_untagged": untagged.accuracy,
        "accuracy_drop": tagged_result.accuracy - untagged.accuracy,
    }


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
