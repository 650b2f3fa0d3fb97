"""Reward-model losses and metrics (LLAMA2_SPEC.md sections 5-6).

r_chosen / r_rejected are the raw scalar head outputs (logits), not the reported sigmoid scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from algorithms.core import _require_ndim, _require_same_shape

__all__ = [
    "RATINGS",
    "MARGINS",
    "margin_for",
    "ranking_loss",
    "safety_aux_loss",
    "pairwise_accuracy",
    "pairwise_accuracy_by_rating",
]

# Preference strength labels, strongest first (section 5); rating ids index this tuple.
RATINGS = ("significantly_better", "better", "slightly_better", "negligibly_better")

# Margin m(r) per rating, in RATINGS order (section 6, paper Table 27).
MARGINS = {
    "small": (1.0, 2 / 3, 1 / 3, 0.0),
    "large": (3.0, 2.0, 1.0, 0.0),
}


def margin_for(rating_ids: torch.Tensor, table: str) -> torch.Tensor:
    """Margin of each pair: rating_ids [N] integer (indices into RATINGS) -> [N] fp32.

    table is a key of MARGINS ("small" or "large"). Unknown tables and ids outside
    [0, len(RATINGS)) raise ValueError.
    """
    if table not in MARGINS:
        raise ValueError(f"margin_for: unknown margin table {table!r}; expected one of {tuple(MARGINS)}")
    _require_ndim("margin_for", "rating_ids", rating_ids, 1)
    if rating_ids.dtype.is_floating_point or rating_ids.dtype == torch.bool:
        raise ValueError(f"margin_for: rating_ids must be an integer tensor, got {rating_ids.dtype}")
    bad = (rating_ids < 0) | (rating_ids >= len(RATINGS))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"margin_for: rating id {int(rating_ids[i])} at index {i} is outside [0, {len(RATINGS)}) (RATINGS={RATINGS})"
        )
    values = torch.tensor(MARGINS[table], dtype=torch.float32, device=rating_ids.device)  # [4]
    return values[rating_ids.long()]  # [N]


def ranking_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary ranking loss with margin (paper eq. 2): mean(-log sigmoid(r_c - r_r - m)) -> 0-d.

    r_chosen, r_rejected, margin [N]; margin None means m = 0 (the plain eq. 1 loss).
    logsigmoid keeps the loss finite for large negative differences.
    """
    _require_ndim("ranking_loss", "r_chosen", r_chosen, 1)
    _require_same_shape("ranking_loss", r_chosen=r_chosen, r_rejected=r_rejected)
    if r_chosen.numel() == 0:
        raise ValueError("ranking_loss: got an empty batch of pairs")
    diff = r_chosen - r_rejected  # [N]
    if margin is not None:
        _require_same_shape("ranking_loss", r_chosen=r_chosen, margin=margin)
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def safety_aux_loss(r: torch.Tensor, is_safe: torch.Tensor) -> torch.Tensor:
    """Auxiliary safe/unsafe loss of the safety RM (section 6) -> 0-d.

    r [N] raw scores of single responses, is_safe [N] bool. The paper names the loss but not its
    formula; this project uses binary cross-entropy of sigmoid(r) against the label, so a safe
    answer is pushed towards a high score and an unsafe one towards a low score, matching how the
    score is read (sigmoid(r) is the reported safety score). The with-logits form is used for
    numerical stability.
    """
    _require_ndim("safety_aux_loss", "r", r, 1)
    _require_same_shape("safety_aux_loss", r=r, is_safe=is_safe)
    if is_safe.dtype != torch.bool:
        raise ValueError(f"safety_aux_loss: is_safe must be a bool tensor, got {is_safe.dtype}")
    if r.numel() == 0:
        raise ValueError("safety_aux_loss: got an empty batch")
    return F.binary_cross_entropy_with_logits(r, is_safe.to(r.dtype))


def _pair_wins(r_chosen: torch.Tensor, r_rejected: torch.Tensor, where: str) -> torch.Tensor:
    """1 where chosen scores higher, 0.5 on ties, 0 otherwise: [N] -> [N] fp32."""
    _require_ndim(where, "r_chosen", r_chosen, 1)
    _require_same_shape(where, r_chosen=r_chosen, r_rejected=r_rejected)
    if r_chosen.numel() == 0:
        raise ValueError(f"{where}: got an empty batch of pairs")
    # A tie is a coin flip for a ranker, so it counts half: a constant RM scores 0.5, not 0 or 1.
    return (r_chosen > r_rejected).float() + 0.5 * (r_chosen == r_rejected).float()


def pairwise_accuracy(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs ranked correctly, ties counting 0.5: [N], [N] -> 0-d fp32 (detached)."""
    return _pair_wins(r_chosen.detach(), r_rejected.detach(), "pairwise_accuracy").mean()


def pairwise_accuracy_by_rating(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    rating_ids: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Accuracy per rating level (as in paper Table 8): [N], [N], [N] ids -> {rating name: 0-d}.

    Only ratings present in the batch appear in the result; ties count 0.5 as in `pairwise_accuracy`.
    """
    _require_same_shape("pairwise_accuracy_by_rating", r_chosen=r_chosen, rating_ids=rating_ids)
    margin_for(rating_ids, "small")  # validates the ids with a clear error
    wins = _pair_wins(r_chosen.detach(), r_rejected.detach(), "pairwise_accuracy_by_rating")  # [N]
    out: dict[str, torch.Tensor] = {}
    for level, name in enumerate(RATINGS):
        selected = rating_ids == level
        if bool(selected.any()):
            out[name] = wins[selected].mean()
    return out
