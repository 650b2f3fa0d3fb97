"""The Llama 2 PPO reward: piecewise safety/helpfulness combination, logit, whitening (LLAMA2_SPEC.md section 8).

    Rc  = Rs  if IS_SAFETY(p) or Rs < 0.15  else Rh
    R~c = WHITEN(LOGIT(Rc))

Rs and Rh are sigmoid scores in [0, 1] of the safety and helpfulness reward models.
"""

from __future__ import annotations

import torch

from algorithms.core import _require_ndim, _require_same_shape, whiten

__all__ = ["SAFETY_THRESHOLD", "combine_safety_helpfulness", "logit", "llama2_reward"]

# Paper section 3.2.3 (PPO): the threshold was chosen for a precision of 0.89 and recall of 0.55 of the
# safety RM on the Meta Safety test set.
SAFETY_THRESHOLD = 0.15


def _require_probabilities(where: str, name: str, p: torch.Tensor) -> None:
    if not bool(((p >= 0) & (p <= 1)).all()):  # NaN fails both comparisons, so it is caught too
        bad = int((~((p >= 0) & (p <= 1))).nonzero()[0, 0])
        raise ValueError(
            f"{where}: {name} must be sigmoid scores in [0, 1], got {float(p.flatten()[bad])} at index {bad}"
        )


def combine_safety_helpfulness(
    rs: torch.Tensor,
    rh: torch.Tensor,
    is_safety: torch.Tensor,
    threshold: float = SAFETY_THRESHOLD,
) -> torch.Tensor:
    """Rc: rs [B], rh [B] scores in [0, 1], is_safety [B] bool -> rc [B].

    The safety score is used for prompts tagged IS_SAFETY and whenever rs < threshold (strictly:
    rs exactly at the threshold uses the helpfulness score), else the helpfulness score.
    """
    where = "combine_safety_helpfulness"
    _require_ndim(where, "rs", rs, 1)
    _require_same_shape(where, rs=rs, rh=rh, is_safety=is_safety)
    if is_safety.dtype != torch.bool:
        raise ValueError(f"{where}: is_safety must be a bool tensor, got {is_safety.dtype}")
    _require_probabilities(where, "rs", rs)
    _require_probabilities(where, "rh", rh)
    return torch.where(is_safety | (rs < threshold), rs, rh)


def logit(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """log(p / (1 - p)), elementwise, any shape.

    p is clamped to [eps, 1 - eps] first: RM scores are sigmoid outputs, which round to exactly
    0 or 1 in finite precision, where the logit would be -inf/+inf and break whitening.
    Values outside [0, 1] are not scores and raise ValueError.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"logit: eps must be in (0, 0.5), got {eps}")
    _require_probabilities("logit", "p", p)
    q = p.clamp(eps, 1.0 - eps)
    return torch.log(q) - torch.log1p(-q)


def llama2_reward(
    rs: torch.Tensor,
    rh: torch.Tensor,
    is_safety: torch.Tensor,
    threshold: float = SAFETY_THRESHOLD,
    whiten_scores: bool = True,
) -> torch.Tensor:
    """R~c = WHITEN(LOGIT(Rc)): rs [B], rh [B], is_safety [B] bool -> [B].

    Whitening uses the statistics of this batch (the paper does not say which statistics; the
    batch of rollouts of one PPO iteration is the natural choice). A batch of one cannot be
    whitened: with whiten_scores=True, B < 2 raises ValueError.
    """
    rc = combine_safety_helpfulness(rs, rh, is_safety, threshold)  # [B]
    z = logit(rc)  # [B]
    if not whiten_scores:
        return z
    if z.shape[0] < 2:
        raise ValueError(f"llama2_reward: whitening needs a batch of at least 2 scores, got {z.shape[0]}")
    return whiten(z)
