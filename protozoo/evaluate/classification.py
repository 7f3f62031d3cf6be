"""Classification metrics in torch: accuracy, balanced accuracy and AUROC (binary, multi-class
one-vs-rest macro, multi-label macro) by the rank (Mann-Whitney U) formula."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from protozoo.evaluate._checks import check_dataset_fits, check_whole
from protozoo.evaluate._parts import iterate_batches, jsonable, model_device, model_logits


@dataclass
class ClassificationResult:
    """Classification scores, all in [0, 1].

    Attributes:
        accuracy: Share of correct arg-max predictions (multi-label: of correct label decisions
            at logit > 0).
        balanced_accuracy: Mean recall over the classes present in the labels (multi-label: mean
            over labels of (sensitivity + specificity) / 2).
        auroc: Binary AUROC, or the macro mean of the one-vs-rest / per-label AUROCs.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_samples: N.
    """

    accuracy: float
    balanced_accuracy: float
    auroc: float
    task: str
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def average_ranks(x: Tensor) -> Tensor:
    """(N,) values -> (N,) 1-based ranks, tied values sharing their average rank."""
    _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()  # last rank of each distinct value
    return (ends - (counts.double() - 1) / 2)[inverse]


def binary_auroc(scores: Tensor, targets: Tensor) -> float:
    """AUROC = P(score of a positive > score of a negative) + 0.5 P(tie), by the rank formula
    ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``.

    Args:
        scores: (N,) higher = more positive.
        targets: (N,) bool or 0/1.

    Returns:
        The AUROC, NaN when one class is absent.
    """
    positive = targets.bool()
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = average_ranks(scores.double())[positive].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def macro_auroc(scores: Tensor, targets: Tensor) -> float:
    """Mean of the per-column binary AUROCs over the columns where both classes occur.

    Args:
        scores: (N, K).
        targets: (N, K) bool or 0/1 (one-hot for one-vs-rest, multi-hot for multi-label).
    """
    columns = range(scores.shape[1])
    values = torch.tensor([binary_auroc(scores[:, k], targets[:, k]) for k in columns], dtype=torch.float64)  # (K,)
    defined = ~values.isnan()
    return values[defined].mean().item() if defined.any() else float("nan")


def classification_metrics(logits: Tensor, labels: Tensor) -> ClassificationResult:
    """Accuracy, balanced accuracy and AUROC of logits against labels.

    The task follows the labels: (N,) class indices with 2 logits -> binary (AUROC of the
    class-1 softmax probability); (N,) with more logits -> multi-class (one-vs-rest macro AUROC
    of the softmax probabilities, as sklearn's ``multi_class="ovr"``); (N, K) multi-hot ->
    multi-label (per-label AUROC of the logits, macro mean).

    Args:
        logits: (N, K).
        labels: (N,) int or (N, K) multi-hot.
    """
    logits = logits.detach().float().cpu()
    labels = labels.detach().cpu()
    if logits.ndim != 2 or len(labels) != len(logits):
        raise ValueError(
            f"expected (N, K) logits and N labels, got logits {tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    bad = (~torch.isfinite(logits)).any(dim=1)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {len(logits)} rows of logits hold NaN or Inf (first: row {int(bad.nonzero()[0, 0])}); "
            "no score is computed from them: check the model's weights (a corrupted weight file gives NaN) and its inputs"
        )
    n, num_classes = logits.shape
    if labels.ndim == 1 and len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1} for {num_classes} logits, got {int(labels.min())}"
            f"..{int(labels.max())}"
        )
    if labels.ndim == 2:
        truth = labels > 0  # (N, K)
        decided = logits > 0
        sensitivity = (decided & truth).sum(0) / truth.sum(0).clamp_min(1)  # (K,)
        specificity = (~decided & ~truth).sum(0) / (~truth).sum(0).clamp_min(1)
        balanced = ((sensitivity + specificity) / 2).mean().item()
        accuracy = (decided == truth).float().mean().item()
        return ClassificationResult(accuracy, balanced, macro_auroc(logits, truth), "multilabel", n)
    labels = labels.long()
    predicted = logits.argmax(dim=1)
    present = torch.bincount(labels, minlength=num_classes) > 0  # (K,)
    hits = torch.bincount(labels[predicted == labels], minlength=num_classes).float()
    recall = hits / torch.bincount(labels, minlength=num_classes).clamp_min(1)  # (K,)
    accuracy = (predicted == labels).float().mean().item()
    balanced = recall[present].mean().item()
    probabilities = logits.softmax(dim=1)  # (N, K)
    if num_classes == 2:
        return ClassificationResult(accuracy, balanced, binary_auroc(probabilities[:, 1], labels == 1), "binary", n)
    one_hot = torch.nn.functional.one_hot(labels, num_classes).bool()
    return ClassificationResult(accuracy, balanced, macro_auroc(probabilities, one_hot), "multiclass", n)


def classification(
    model: nn.Module, dataset: Dataset, *, batch_size: int = 32, device: torch.device | str | None = None
) -> ClassificationResult:
    """Runs the model over the dataset and scores its logits (see :func:`classification_metrics`).

    Args:
        model: Any model whose output is logits or has ``.logits``.
        dataset: Items with ``image`` and ``label``.
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.
    """
    check_whole("batch_size", batch_size)
    check_dataset_fits(model, dataset)
    device = torch.device(device) if device is not None else model_device(model)
    logits, labels = [], []
    with torch.inference_mode():
        for batch in iterate_batches(dataset, batch_size, device):
            logits.append(model_logits(model, batch).cpu())
            labels.append(batch["label"].cpu())
    if not logits:
        raise ValueError("the dataset is empty")
    return classification_metrics(torch.cat(logits), torch.cat(labels))


def lesion_aurocs(
    model: nn.Module, dataset: Dataset, *, batch_size: int = 32, device: torch.device | str | None = None
) -> dict[str, float]:
    """Per-lesion AUROC of a lesion-linked model's lesion logits against image-level lesion labels.

    Args:
        model: A model whose output has ``lesion_logits`` (B, L) and that names ``lesion_names``.
        dataset: Items with ``image`` and multi-hot ``lesions`` (L,).
        batch_size: Images per forward.
        device: Where to run; None uses the model's device.

    Returns:
        ``lesion name -> AUROC`` (nan for a lesion that is always or never present).
    """
    check_whole("batch_size", batch_size)
    check_dataset_fits(model, dataset)
    device = torch.device(device) if device is not None else model_device(model)
    logits, labels = [], []
    with torch.inference_mode():
        for batch in iterate_batches(dataset, batch_size, device):
            logits.append(model(batch["image"]).lesion_logits.cpu())  # (B, L)
            labels.append(batch["lesions"].cpu())
    if not logits:
        raise ValueError("the dataset is empty")
    scores, targets = torch.cat(logits), torch.cat(labels) > 0.5
    return {name: binary_auroc(scores[:, i], targets[:, i]) for i, name in enumerate(model.lesion_names)}
