"""algorithms.selection: best-of-K and the expected max reward curve (LLAMA2_SPEC.md section 7)."""

import itertools

import pytest
import torch

from algorithms import best_of_k, max_reward_curve


def test_best_of_k_flat_and_grouped():
    scores = torch.tensor([0.1, 0.9, 0.3, 5.0, -1.0, 4.0])
    assert best_of_k(scores, 3).tolist() == [1, 3]
    assert best_of_k(scores.view(2, 3), 3).tolist() == [1, 3]
    assert best_of_k(scores, 2).tolist() == [1, 3, 5]
    assert best_of_k(scores, 2).dtype == torch.long


def test_best_of_k_ties_go_to_lowest_index_and_k_one():
    scores = torch.tensor([2.0, 7.0, 7.0, 7.0, 1.0, 1.0])
    assert best_of_k(scores, 3).tolist() == [1, 3]
    assert best_of_k(scores, 1).tolist() == [0, 1, 2, 3, 4, 5]


def test_best_of_k_errors():
    with pytest.raises(ValueError, match="5 scores cannot be split into groups of k=2"):
        best_of_k(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="do not have k=3 columns"):
        best_of_k(torch.zeros(2, 4), 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        best_of_k(torch.zeros(4), 0)
    with pytest.raises(ValueError, match="flat index 2 is NaN"):
        best_of_k(torch.tensor([0.0, 1.0, float("nan"), 3.0]), 2)


def _brute_force_curve(scores):
    N, K = scores.shape
    curve = []
    for k in range(1, K + 1):
        per_prompt = [
            sum(max(float(scores[n, i]) for i in subset) for subset in itertools.combinations(range(K), k))
            / len(list(itertools.combinations(range(K), k)))
            for n in range(N)
        ]
        curve.append(sum(per_prompt) / N)
    return torch.tensor(curve, dtype=torch.float64)


def test_max_reward_curve_matches_brute_force_over_subsets():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 6, generator=g, dtype=torch.float64)
    scores[0, 2] = scores[0, 4]  # a tie
    got = max_reward_curve(scores)
    torch.testing.assert_close(got, _brute_force_curve(scores))
    torch.testing.assert_close(got[0], scores.mean())
    torch.testing.assert_close(got[-1], scores.max(dim=1).values.mean())
    assert (got[1:] >= got[:-1]).all()


def test_max_reward_curve_hand_case_and_large_k():
    # samples {0, 1, 2}: pairs {0,1},{0,2},{1,2} have maxima 1, 2, 2 -> 5/3
    got = max_reward_curve(torch.tensor([[2.0, 0.0, 1.0]]))
    torch.testing.assert_close(got, torch.tensor([1.0, 5 / 3, 2.0]))
    assert got.dtype == torch.float32
    big = max_reward_curve(torch.rand(3, 200, generator=torch.Generator().manual_seed(1)))
    assert torch.isfinite(big).all() and (big[1:] >= big[:-1] - 1e-6).all()


def test_max_reward_curve_errors():
    with pytest.raises(ValueError, match=r"expected non-empty scores \[N, K\]"):
        max_reward_curve(torch.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        max_reward_curve(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="floating point"):
        max_reward_curve(torch.tensor([[1, 2]]))
