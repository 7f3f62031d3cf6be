"""AUROC by ranks against the pairwise definition (with ties); accuracy and balanced accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from protozoo.evaluate import binary_auroc, classification, classification_metrics, macro_auroc


def pairwise_auroc(scores, targets):
    """P(positive > negative) + 0.5 P(tie), over every positive-negative pair."""
    positives = [s for s, t in zip(scores.tolist(), targets.tolist()) if t]
    negatives = [s for s, t in zip(scores.tolist(), targets.tolist()) if not t]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


@pytest.mark.parametrize("levels", [3, 10, 1000])  # few levels = many ties
def test_binary_auroc_matches_pairwise(levels):
    generator = torch.Generator().manual_seed(levels)
    scores = torch.randint(levels, (200,), generator=generator).float()
    targets = torch.rand(200, generator=generator) < 0.3 + 0.004 * scores / levels * 100
    assert binary_auroc(scores, targets) == pytest.approx(pairwise_auroc(scores, targets), abs=1e-12)


def test_auroc_edge_cases():
    assert binary_auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert binary_auroc(torch.ones(5), torch.tensor([0, 1, 0, 1, 1])) == 0.5  # all tied
    assert math.isnan(binary_auroc(torch.rand(4), torch.zeros(4)))


def test_multiclass_and_multilabel_macro():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 4, generator=generator).round(decimals=1)
    labels = torch.randint(4, (60,), generator=generator)
    probabilities = logits.softmax(dim=1)
    expected = sum(pairwise_auroc(probabilities[:, k], labels == k) for k in range(4)) / 4
    result = classification_metrics(logits, labels)
    assert result.task == "multiclass" and result.auroc == pytest.approx(expected, abs=1e-6)
    multi_hot = torch.rand(60, 4, generator=generator) < 0.4
    multi_hot[:, 3] = False  # a label never positive: left out of the macro mean
    expected = sum(pairwise_auroc(logits[:, k], multi_hot[:, k]) for k in range(3)) / 3
    assert macro_auroc(logits, multi_hot) == pytest.approx(expected, abs=1e-12)
    result = classification_metrics(logits, multi_hot.float())
    assert result.task == "multilabel" and result.auroc == pytest.approx(expected, abs=1e-12)
    assert result.accuracy == pytest.approx(((logits > 0) == multi_hot).float().mean().item())


def test_accuracy_and_balanced_accuracy():
    logits = torch.eye(3)[[0, 0, 0, 0, 1, 2]]  # predicts 0, 0, 0, 0, 1, 2
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    result = classification_metrics(logits, labels)
    assert result.accuracy == pytest.approx(5 / 6)
    assert result.balanced_accuracy == pytest.approx((1 + 0.5 + 1) / 3)
    binary = classification_metrics(torch.tensor([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0]]), torch.tensor([1, 0, 0]))
    assert binary.task == "binary" and binary.auroc == 0.5


def test_classification_runs_the_model(tiny_model, parts_data):
    result = classification(tiny_model, parts_data, batch_size=8)
    assert result.num_samples == len(parts_data) and 0 <= result.accuracy <= 1
