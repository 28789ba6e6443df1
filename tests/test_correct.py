"""carlib.engine.correct: the top-k rule, tallies, and the decision margin."""

from __future__ import annotations

import pytest
import torch

from carlib.engine import correct_rows, count_correct, decision_margin, tally


def test_ties_go_to_the_lower_class_and_topk_counts_any_of_the_k():
    logits = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    assert correct_rows(logits, torch.tensor([0, 1, 2])).tolist() == [True, True, False]
    assert correct_rows(logits, torch.tensor([1, 2, 2]), topk=2).tolist() == [True, True, False]
    t = tally(logits, torch.tensor([0, 1, 0]), torch.tensor([1, 1, 0]), (2, 3))
    assert t.tolist() == [[1, 0, 0], [1, 1, 0]]
    assert count_correct(logits, torch.tensor([0, 1, 0]), 1, 3).tolist() == [[2, 1, 0]]


def test_decision_margin_is_the_distance_to_another_decision():
    logits = torch.tensor([[3.0, 1.0, 2.5, 0.0],
                           [3.0, 2.9, 0.0, -5.0],
                           [3.0, 2.9, 0.0, -5.0]])
    # correct by 0.5; wrong by 8 although its two best classes are 0.1 apart; correct by 0.1
    assert decision_margin(logits, torch.tensor([0, 3, 1])).tolist() == pytest.approx([0.5, 8.0, 0.1])
    # top-2: label 1 of row 0 is third (2.5 is the 2nd largest other); row 1's label 1 is second
    assert decision_margin(logits[:2], torch.tensor([1, 1]), topk=2).tolist() == pytest.approx([1.5, 2.9])
    assert torch.isnan(decision_margin(torch.tensor([[float("nan"), 1.0]]), torch.tensor([0])))[0]


@pytest.mark.parametrize("topk", [1, 3])
def test_moves_within_half_the_margin_keep_every_decision(topk):
    """What the bf16 screen relies on: if no logit moves by half the margin or more, whether the
    row counts as correct is unchanged; a move just past half the margin can change it."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 10, generator=g)
    y = torch.randint(0, 10, (4000,), generator=g)
    m = decision_margin(logits, y, topk)
    before = count_correct(logits, y, 1, 10, topk)
    noise = (torch.rand(4000, 10, generator=g) * 2 - 1) * (0.499 * m[:, None])
    assert torch.equal(count_correct(logits + noise, y, 1, 10, topk), before)
    # push the label toward the other side by just over half the margin and the k-th other
    # toward it by as much: decisions change (with top-1, every correct row becomes wrong)
    correct = (logits.topk(topk, dim=1).indices == y[:, None]).any(dim=1)
    sign = torch.where(correct, -1.0, 1.0)[:, None]
    others = logits.scatter(1, y[:, None], float("-inf"))
    kth = others.topk(topk, dim=1).indices[:, topk - 1 :]
    push = torch.zeros_like(logits)
    push.scatter_(1, y[:, None], sign * 0.501 * m[:, None])
    push.scatter_(1, kth, -sign * 0.501 * m[:, None])
    flipped = ((logits + push).topk(topk, dim=1).indices == y[:, None]).any(dim=1)
    assert (flipped != correct).sum() > 100
    if topk == 1:
        assert (flipped != correct)[correct].all()
