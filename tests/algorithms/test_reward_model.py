"""algorithms.reward_model: margins, ranking loss (paper eq. 2), safety aux loss, accuracy."""

import math

import pytest
import torch

from algorithms import (
    MARGINS,
    RATINGS,
    margin_for,
    pairwise_accuracy,
    pairwise_accuracy_by_rating,
    ranking_loss,
    safety_aux_loss,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_margin_tables_follow_the_paper():
    assert RATINGS[0] == "significantly_better" and RATINGS[-1] == "negligibly_better"
    ids = torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(margin_for(ids, "large"), torch.tensor([3.0, 2.0, 1.0, 0.0, 3.0]))
    torch.testing.assert_close(margin_for(ids, "small"), torch.tensor([1.0, 2 / 3, 1 / 3, 0.0, 1.0]))
    assert set(MARGINS) == {"small", "large"}


@pytest.mark.parametrize(
    "ids, table, match",
    [
        (torch.tensor([0, 4]), "small", "rating id 4 at index 1"),
        (torch.tensor([-1]), "large", "rating id -1 at index 0"),
        (torch.tensor([0]), "medium", "unknown margin table 'medium'"),
        (torch.tensor([0.0]), "small", "integer"),
    ],
)
def test_margin_for_rejects_bad_input(ids, table, match):
    with pytest.raises(ValueError, match=match):
        margin_for(ids, table)


def test_ranking_loss_hand_case_with_margin():
    rc, rr = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 0.5])
    margin = torch.tensor([1.0, 0.0])
    # pair 0: diff - m = 0 -> log 2; pair 1: 0 -> log 2
    torch.testing.assert_close(ranking_loss(rc, rr, margin), torch.tensor(math.log(2.0)))
    # without margin pair 0 has diff 1: -log sigmoid(1)
    expected = (-math.log(_sigmoid(1.0)) + math.log(2.0)) / 2
    torch.testing.assert_close(ranking_loss(rc, rr), torch.tensor(expected))


def test_ranking_loss_margin_raises_loss_and_is_stable():
    rc, rr = torch.tensor([0.3, -1.0]), torch.tensor([0.1, 0.4])
    ids = torch.tensor([0, 1])
    assert ranking_loss(rc, rr, margin_for(ids, "large")) > ranking_loss(rc, rr, margin_for(ids, "small"))
    huge = ranking_loss(torch.tensor([-1000.0]), torch.tensor([1000.0]))
    torch.testing.assert_close(huge, torch.tensor(2000.0))


def test_ranking_loss_gradient_pushes_chosen_up():
    rc = torch.tensor([0.0], requires_grad=True)
    rr = torch.tensor([0.0], requires_grad=True)
    ranking_loss(rc, rr).backward()
    # d/d rc of -log sigmoid(rc - rr) at 0 is -1/2
    torch.testing.assert_close(rc.grad, torch.tensor([-0.5]))
    torch.testing.assert_close(rr.grad, torch.tensor([0.5]))


def test_ranking_loss_errors():
    with pytest.raises(ValueError, match="same shape"):
        ranking_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        ranking_loss(torch.zeros(2), torch.zeros(2), torch.zeros(1))
    with pytest.raises(ValueError, match="empty"):
        ranking_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="1 dims"):
        ranking_loss(torch.zeros(2, 1), torch.zeros(2, 1))


def test_safety_aux_loss_is_bce_of_sigmoid():
    r = torch.tensor([2.0, -1.0])
    is_safe = torch.tensor([True, True])
    expected = -(math.log(_sigmoid(2.0)) + math.log(_sigmoid(-1.0))) / 2
    torch.testing.assert_close(safety_aux_loss(r, is_safe), torch.tensor(expected))
    # an unsafe label flips the target: -log(1 - sigmoid(r))
    torch.testing.assert_close(
        safety_aux_loss(torch.tensor([2.0]), torch.tensor([False])), torch.tensor(-math.log(1 - _sigmoid(2.0)))
    )
    torch.testing.assert_close(safety_aux_loss(torch.tensor([-500.0]), torch.tensor([True])), torch.tensor(500.0))


def test_safety_aux_loss_errors():
    with pytest.raises(ValueError, match="bool"):
        safety_aux_loss(torch.zeros(2), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="same shape"):
        safety_aux_loss(torch.zeros(2), torch.tensor([True]))


def test_pairwise_accuracy_counts_ties_half():
    rc = torch.tensor([1.0, 0.0, 2.0, -1.0])
    rr = torch.tensor([0.0, 0.0, 3.0, -2.0])
    # win, tie, loss, win -> (1 + 0.5 + 0 + 1) / 4
    torch.testing.assert_close(pairwise_accuracy(rc, rr), torch.tensor(0.625))
    with pytest.raises(ValueError, match="same shape"):
        pairwise_accuracy(rc, rr[:2])


def test_pairwise_accuracy_by_rating():
    rc = torch.tensor([1.0, 0.0, 2.0, -1.0])
    rr = torch.tensor([0.0, 0.0, 3.0, -2.0])
    ids = torch.tensor([0, 0, 3, 3])
    got = pairwise_accuracy_by_rating(rc, rr, ids)
    assert set(got) == {"significantly_better", "negligibly_better"}
    torch.testing.assert_close(got["significantly_better"], torch.tensor(0.75))
    torch.testing.assert_close(got["negligibly_better"], torch.tensor(0.5))
    with pytest.raises(ValueError, match="rating id 7"):
        pairwise_accuracy_by_rating(rc, rr, torch.tensor([0, 7, 0, 0]))
