"""Consistency and stability with DataLoader workers loading the items: the same results as without."""

from __future__ import annotations

import pytest
import torch

from protozoo.evaluate import consistency_and_stability


def test_workers_give_the_same_scores(tiny_model, parts_data):
    c0, s0 = consistency_and_stability(tiny_model, parts_data, seed=1, batch_size=5)
    c2, s2 = consistency_and_stability(tiny_model, parts_data, seed=1, batch_size=5, num_workers=2)
    assert c2.score == c0.score and torch.equal(c2.ratios.nan_to_num(-1), c0.ratios.nan_to_num(-1))
    assert s2.score == s0.score and torch.equal(s2.per_prototype.nan_to_num(-1), s0.per_prototype.nan_to_num(-1))


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_num_workers_is_checked(tiny_model, parts_data, bad):
    with pytest.raises(ValueError, match="num_workers"):
        consistency_and_stability(tiny_model, parts_data, num_workers=bad)
