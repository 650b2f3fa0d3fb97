"""PPO losses (Schulman et al. 2017, eq. 7 and the clipped value loss of their baselines code).

LLAMA2_SPEC.md section 8: clip 0.2, one gradient step per mini-batch. All per-token tensors are
[B, T] with `mask` marking response tokens; losses are means over the valid tokens of the batch.
Stats are detached 0-d tensors (call float() to log them).
"""

from __future__ import annotations

import torch

from algorithms.core import _as_bool_mask, _require_ndim, _require_same_shape, masked_mean

__all__ = ["ppo_policy_loss", "value_loss"]


def _token_mask(where: str, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    m = _as_bool_mask(where, mask, like)
    if not bool(m.any()):
        raise ValueError(f"{where}: mask has no valid token; there is nothing to train on")
    return m


def ppo_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate objective as a loss -> (0-d loss, stats).

    logp [B, T] current policy log-probs (with grad), old_logp [B, T] log-probs of the policy that
    sampled the rollouts, advantages [B, T], mask [B, T]. With ratio r = exp(logp - old_logp):
        loss_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - clip, 1 + clip))
    i.e. the negative of PPO's pessimistic min, then a masked mean over tokens.
    Stats: clip_frac (share of tokens where the clipped term is the active, larger one),
    approx_kl (k3 estimate of KL(old || new): r - 1 - log r, averaged), ratio_mean.
    """
    where = "ppo_policy_loss"
    _require_ndim(where, "logp", logp, 2)
    _require_same_shape(where, logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    if clip <= 0:
        raise ValueError(f"{where}: clip must be > 0, got {clip}")
    m = _token_mask(where, mask, logp)
    log_ratio = logp - old_logp  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]
    unclipped = -advantages * ratio  # [B, T]
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)  # [B, T]
    loss = masked_mean(torch.maximum(unclipped, clipped), m)
    with torch.no_grad():
        stats = {
            "clip_frac": masked_mean((clipped > unclipped).float(), m),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, m),
            "ratio_mean": masked_mean(ratio, m),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float | None = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Critic loss -> (0-d loss, stats); all inputs [B, T].

    With clip:  0.5 * max((v - R)^2, (old_v + clip(v - old_v, -clip, clip) - R)^2)
    With None:  0.5 * (v - R)^2
    then a masked mean over tokens. The clipped form keeps the critic close to the one that
    produced the rollout values, like the policy's trust region. The clip is on the value scale,
    so it assumes whitened rewards (section 8, R~c is whitened).
    Stats: clip_frac (share of tokens where the clipped error is the larger one; 0 when unclipped),
    value_mean, returns_mean.
    """
    where = "value_loss"
    _require_ndim(where, "values", values, 2)
    _require_same_shape(where, values=values, old_values=old_values, returns=returns, mask=mask)
    if clip is not None and clip <= 0:
        raise ValueError(f"{where}: clip must be > 0 or None, got {clip}")
    m = _token_mask(where, mask, values)
    err = (values - returns) ** 2  # [B, T]
    if clip is None:
        per_token = err
        clip_frac = torch.zeros((), device=values.device)
    else:
        v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)  # [B, T]
        err_clipped = (v_clipped - returns) ** 2  # [B, T]
        per_token = torch.maximum(err, err_clipped)
        clip_frac = masked_mean((err_clipped > err).float(), m).detach()
    loss = 0.5 * masked_mean(per_token, m)
    with torch.no_grad():
        stats = {
            "clip_frac": clip_frac,
            "value_mean": masked_mean(values, m),
            "returns_mean": masked_mean(returns, m),
        }
    return loss, stats
