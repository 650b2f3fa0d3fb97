"""PPO rewards and advantages: KL-shaped per-token rewards and GAE (LLAMA2_SPEC.md section 8).

Tensors are laid out per token, [B, T]; `mask` marks the response tokens (the actions). Callers pass
detached tensors: rewards and advantages are targets, not something to differentiate.
"""

from __future__ import annotations

import torch

from algorithms.core import _as_bool_mask, _require_ndim, _require_same_shape
from algorithms.kl import kl_estimate

__all__ = ["last_valid_index", "kl_penalized_rewards", "gae"]


def last_valid_index(mask: torch.Tensor, where: str = "last_valid_index") -> torch.Tensor:
    """Index of the last 1 in each row: mask [B, T] (0/1 or bool) -> LongTensor [B].

    A row without any 1 raises ValueError naming the row(s).
    """
    _require_ndim(where, "mask", mask, 2)
    m = _as_bool_mask(where, mask, mask)
    positions = torch.arange(m.shape[1], device=m.device).expand_as(m)  # [B, T]
    last = torch.where(m, positions, torch.full_like(positions, -1)).amax(dim=1)  # [B]
    empty = (last < 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{where}: rows {empty} have no response token (mask is all 0)")
    return last


def kl_penalized_rewards(
    scores: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    kind: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards R = R~c - beta * KL (section 8) -> (rewards [B, T], kl [B, T]).

    scores [B] sequence rewards (already combined and whitened, R~c); logp, ref_logp [B, T]
    log-probs of the sampled tokens under the policy and the frozen reference pi_0; mask [B, T]
    response tokens. Every response token gets -beta * KL_t (estimator `kind`, see algorithms.kl);
    the sequence score is added on the last response token of each row, where the episode ends.
    Masked positions are 0 in both outputs (their input values are ignored).
    """
    where = "kl_penalized_rewards"
    _require_ndim(where, "logp", logp, 2)
    _require_same_shape(where, logp=logp, ref_logp=ref_logp, mask=mask)
    if tuple(scores.shape) != (logp.shape[0],):
        raise ValueError(f"{where}: scores must have shape [B]=({logp.shape[0]},), got {tuple(scores.shape)}")
    if beta < 0:
        raise ValueError(f"{where}: beta must be >= 0, got {beta}")
    m = _as_bool_mask(where, mask, logp)
    last = last_valid_index(m, where)  # [B]
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    kl = torch.where(m, kl_estimate(logp, ref_logp, kind), zero)  # [B, T]
    rewards = -beta * kl  # [B, T]
    rows = torch.arange(logp.shape[0], device=logp.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards, kl


def _require_contiguous(m: torch.Tensor, where: str) -> None:
    """GAE treats the 1s of a row as one episode, so they must form one contiguous block."""
    padded = torch.nn.functional.pad(m.to(torch.int8), (1, 0))  # [B, T+1], a 0 before each row
    starts = (padded[:, 1:] - padded[:, :-1] == 1).sum(dim=1)  # [B] number of 0->1 steps
    broken = (starts > 1).nonzero().flatten().tolist()
    if broken:
        raise ValueError(f"{where}: rows {broken} have a mask that is not one contiguous block of 1s")


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) -> (advantages, returns), [B, T].

    rewards, values, mask [B, T]. In each row the 1s of mask form one contiguous block (it may
    start after a prompt region of 0s and be followed by padding); the episode ends after its last
    token, so the value there is 0:
        delta_t = r_t + gamma * V_{t+1} * m_{t+1} - V_t
        A_t     = delta_t + gamma * lam * m_{t+1} * A_{t+1}
    returns = advantages + values (the critic's regression target). Masked positions are 0 in both
    outputs and their input values are ignored (a row without any 1 is all 0). Rows are processed
    together; the loop runs over T.
    The paper does not state gamma/lambda (section 8): they are config values.
    """
    where = "gae"
    _require_ndim(where, "rewards", rewards, 2)
    _require_same_shape(where, rewards=rewards, values=values, mask=mask)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"{where}: gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    m = _as_bool_mask(where, mask, rewards)
    _require_contiguous(m, where)
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    r = torch.where(m, rewards, zero)  # [B, T]
    v = torch.where(m, values.to(rewards.dtype), zero)  # [B, T]
    mf = m.to(rewards.dtype)  # [B, T]
    B, T = r.shape
    advantages = torch.zeros_like(r)  # [B, T]
    next_adv = torch.zeros(B, dtype=r.dtype, device=r.device)  # [B]
    next_value = torch.zeros(B, dtype=r.dtype, device=r.device)  # [B]
    next_mask = torch.zeros(B, dtype=r.dtype, device=r.device)  # [B]
    for t in reversed(range(T)):
        delta = r[:, t] + gamma * next_value * next_mask - v[:, t]
        next_adv = (delta + gamma * lam * next_mask * next_adv) * mf[:, t]
        advantages[:, t] = next_adv
        next_value, next_mask = v[:, t], mf[:, t]
    returns = torch.where(m, advantages + v, zero)
    return advantages, returns
