"""Best-of-K selection for rejection sampling (LLAMA2_SPEC.md section 7).

For each prompt K answers are sampled and scored; the best one becomes an SFT target. The paper's
"maximum reward vs number of samples" plots (Figure 7) are reproduced by `max_reward_curve`.
"""

from __future__ import annotations

import torch

__all__ = ["best_of_k", "max_reward_curve"]


def _as_groups(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores [N*K] (prompt-major: the K samples of a prompt are adjacent) or [N, K] -> [N, K]."""
    if k < 1:
        raise ValueError(f"best_of_k: k must be >= 1, got {k}")
    if scores.dim() == 1:
        if scores.numel() % k != 0:
            raise ValueError(f"best_of_k: {scores.numel()} scores cannot be split into groups of k={k}")
        return scores.reshape(-1, k)  # [N, K]
    if scores.dim() == 2:
        if scores.shape[1] != k:
            raise ValueError(f"best_of_k: scores of shape {tuple(scores.shape)} do not have k={k} columns")
        return scores
    raise ValueError(f"best_of_k: expected scores [N*K] or [N, K], got shape {tuple(scores.shape)}")


def best_of_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat index of the best-scoring sample of each prompt -> LongTensor [N].

    scores [N*K] or [N, K]; flat index = prompt * K + sample. Ties go to the lowest index (the
    earliest sample), so the choice is deterministic. NaN scores raise ValueError: a NaN would
    otherwise win the argmax.
    """
    groups = _as_groups(scores, k)  # [N, K]
    if bool(torch.isnan(groups).any()):
        bad = torch.isnan(groups).flatten().nonzero()[0, 0].item()
        raise ValueError(f"best_of_k: score at flat index {bad} is NaN")
    # torch.argmax returns the first maximal index, which implements the lowest-index tie rule
    best = groups.argmax(dim=1)  # [N]
    offsets = torch.arange(groups.shape[0], device=groups.device) * k  # [N]
    return offsets + best


def _max_of_subset_weights(K: int, device: torch.device) -> torch.Tensor:
    """W [K, K], W[k-1, i-1] = P(the i-th smallest of K is the max of a random k-subset).

    That happens when the subset holds item i and its k-1 others come from the i-1 smaller ones:
    C(i-1, k-1) / C(K, k), zero for i < k. Computed through lgamma in fp64 so large K does not
    overflow.
    """
    ks = torch.arange(1, K + 1, dtype=torch.float64, device=device).unsqueeze(1)  # [K, 1]
    idx = torch.arange(1, K + 1, dtype=torch.float64, device=device).unsqueeze(0)  # [1, K]
    valid = idx >= ks  # [K, K]

    def log_comb(n: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma(n - r + 1)

    n_minus = torch.where(valid, idx - 1, ks - 1)  # keep lgamma finite where weights are 0
    log_w = log_comb(n_minus, ks - 1) - log_comb(torch.tensor(float(K), dtype=torch.float64), ks)  # [K, K]
    return torch.where(valid, torch.exp(log_w), torch.zeros((), dtype=torch.float64))


def max_reward_curve(scores: torch.Tensor) -> torch.Tensor:
    """Expected maximum reward among k samples, k = 1..K, averaged over prompts -> [K].

    scores [N, K]. For each k, the expectation is over all k-subsets of the K samples drawn
    without replacement (an unbiased estimate, smoother than taking the first k samples), computed
    exactly from order statistics: E[max_k] = sum_i C(i-1, k-1) / C(K, k) * s_(i), with s_(i)
    the i-th smallest score. Entry K-1 is the mean best-of-K reward; entry 0 the mean reward.
    Returned in the dtype of scores.
    """
    if scores.dim() != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"max_reward_curve: expected non-empty scores [N, K], got shape {tuple(scores.shape)}")
    if not scores.dtype.is_floating_point:
        raise ValueError(f"max_reward_curve: scores must be floating point, got {scores.dtype}")
    if bool(torch.isnan(scores).any()):
        raise ValueError("max_reward_curve: scores contain NaN")
    ordered = scores.double().sort(dim=1).values  # [N, K] ascending
    weights = _max_of_subset_weights(scores.shape[1], scores.device)  # [K, K]
    per_prompt = ordered @ weights.T  # [N, K]
    return per_prompt.mean(dim=0).to(scores.dtype)
