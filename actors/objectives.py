"""What a model computes for one micro-batch: training objectives and no-grad forward passes.

Thin glue between the batches of actors/batch.py and the pure math of algorithms/. Every objective
returns the MEAN loss over its `count` units (trainable tokens or pairs) plus statistics as SUMS over
those units, so the learner can weight micro-batches and ranks by their share of the global count
(a token-level mean over the whole batch, identical for any number of ranks or micro-batches).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from actors.batch import PairBatch, PPOBatch, TokenBatch, shared_prefix_rows
from algorithms import (
    RATINGS,
    entropy_from_logits,
    masked_mean,
    pairwise_accuracy,
    pairwise_accuracy_by_rating,
    ppo_policy_loss,
    ranking_loss,
    safety_aux_loss,
    sft_loss,
    shifted_token_logprobs,
    value_loss,
)

__all__ = [
    "MicroResult",
    "sft_objective",
    "ppo_objective",
    "value_objective",
    "ranking_objective",
    "forward_logprobs",
    "forward_values",
    "forward_scores",
]


@dataclass
class MicroResult:
    loss: torch.Tensor  # 0-d, mean over `count` units; 0 * output when count == 0 (see `_empty`)
    count: int  # trainable tokens (SFT, PPO, value) or pairs (ranking) in this micro-batch
    sums: dict[str, float] = field(default_factory=dict)  # statistic * units, reduced over ranks
    ratios: dict[str, tuple[float, float]] = field(default_factory=dict)  # (numerator, denominator)


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


def _empty(output: torch.Tensor) -> MicroResult:
    """A micro-batch without units (e.g. a padding row) still runs backward, with zero gradient:
    DDP all-reduces during the last backward, so every rank must call it the same number of times."""
    return MicroResult(loss=output.sum() * 0.0, count=0)


def sft_objective(model: nn.Module, mb: TokenBatch) -> MicroResult:
    """Next-token cross-entropy on tokens with loss_mask 1 (section 4; RS, GAtt and distillation too)."""
    logits = model(mb.tokens, segment_ids=mb.segment_ids)  # [b, T, V]
    count = int((mb.loss_mask[:, 1:] != 0).sum())
    if count == 0:
        return _empty(logits)
    loss = sft_loss(logits, mb.tokens, mb.loss_mask)
    return MicroResult(loss=loss, count=count, sums={"loss": _f(loss) * count})


def ppo_objective(model: nn.Module, mb: PPOBatch, clip: float, entropy_coef: float) -> MicroResult:
    """Clipped surrogate (section 8) minus an entropy bonus, on the response tokens."""
    logits = model(mb.tokens)  # [b, T, V]
    count = int((mb.response_mask != 0).sum())
    if count == 0:
        return _empty(logits)
    logp = shifted_token_logprobs(logits, mb.tokens)  # [b, T-1]
    policy, st = ppo_policy_loss(logp, mb.old_logprobs, mb.advantages, mb.response_mask, clip)
    with torch.set_grad_enabled(entropy_coef != 0.0):
        entropy = masked_mean(entropy_from_logits(logits[:, :-1]), mb.response_mask)
    loss = policy - entropy_coef * entropy
    with torch.no_grad():
        ref_kl = masked_mean(logp - mb.ref_logprobs, mb.response_mask)  # k1 estimate, for monitoring
    sums = {
        "loss": _f(loss) * count,
        "policy_loss": _f(policy) * count,
        "entropy": _f(entropy) * count,
        "ref_kl": _f(ref_kl) * count,
    } | {k: _f(v) * count for k, v in st.items()}
    return MicroResult(loss=loss, count=count, sums=sums)


def value_objective(model: nn.Module, mb: PPOBatch, clip: float | None) -> MicroResult:
    """Clipped value regression onto the GAE returns; V(prefix up to t) predicts target t+1's return."""
    values = model(mb.tokens)[:, :-1]  # [b, T-1]
    count = int((mb.response_mask != 0).sum())
    if count == 0:
        return _empty(values)
    loss, st = value_loss(values, mb.old_values, mb.returns, mb.response_mask, clip)
    sums = {"loss": _f(loss) * count} | {k: _f(v) * count for k, v in st.items()}
    return MicroResult(loss=loss, count=count, sums=sums)


def _pad_right(x: torch.Tensor, width: int) -> torch.Tensor:
    return F.pad(x, (0, width - x.shape[1]), value=0)  # [b, width]; read indices stay < old width


def pair_scores(model: nn.Module, mb: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Scalar scores of each pair's chosen and rejected answer -> ([n], [n]), one forward for both sides:
    one shared-prefix row per pair when the batch has prefix_len (the prompt computed once), else the
    chosen and rejected rows stacked and cut to the micro-batch's longest answer."""
    n = len(mb)
    if mb.prefix_len is not None:
        tokens, positions, mask, last_c, last_r = shared_prefix_rows(mb)  # [n, L] ... [n]
        scores = model(tokens, positions=positions, attn_mask=mask)  # [n, L]
        rows = torch.arange(n, device=scores.device)
        return scores[rows, last_c], scores[rows, last_r]  # [n], [n]
    last = torch.cat([mb.chosen_last, mb.rejected_last]).long()  # [2n]
    # Only this micro-batch's longest answer sets the width: with causal attention the scores read at
    # `last` do not depend on the right padding cut here.
    width = int(last.max()) + 1 if n else 1
    tokens = torch.cat([_pad_right(mb.chosen[:, :width], width), _pad_right(mb.rejected[:, :width], width)])  # [2n, T]
    r = model(tokens)[torch.arange(2 * n), last]  # [2n]
    return r[:n], r[n:]  # [n], [n]


def ranking_objective(model: nn.Module, mb: PairBatch, aux_weight: float) -> MicroResult:
    """Margin ranking loss (section 6, paper eq. 2) + aux_weight * safety BCE; one forward for both sides."""
    n = len(mb)
    r_chosen, r_rejected = pair_scores(model, mb)  # [n], [n]
    r = torch.cat([r_chosen, r_rejected])  # [2n]
    loss = ranking_loss(r_chosen, r_rejected, mb.margin.to(r.dtype))
    sums = {"ranking_loss": _f(loss) * n}
    if aux_weight > 0:
        if not mb.has_safety_labels:
            raise ValueError("train_ranking: aux_weight > 0 needs PairBatch.chosen_safe/rejected_safe labels")
        aux = safety_aux_loss(r, torch.cat([mb.chosen_safe, mb.rejected_safe]))
        loss = loss + aux_weight * aux
        sums["safety_aux_loss"] = _f(aux) * n
    accuracy = pairwise_accuracy(r_chosen, r_rejected)  # ties count 0.5
    sums |= {"loss": _f(loss) * n, "accuracy": _f(accuracy) * n, "margin_gap": _f((r_chosen - r_rejected).sum())}
    ratios = {}
    if mb.rating is not None:  # accuracy per rating level, as in paper Table 8
        by_level = pairwise_accuracy_by_rating(r_chosen, r_rejected, mb.rating)
        for level, name in enumerate(RATINGS):
            count = int((mb.rating == level).sum())
            ratios[f"accuracy/{name}"] = (_f(by_level[name]) * count if count else 0.0, float(count))
    return MicroResult(loss=loss, count=n, sums=sums, ratios=ratios)


@torch.no_grad()
def forward_logprobs(model: nn.Module, mb: TokenBatch) -> torch.Tensor:
    """log pi(tokens[:, t+1] | tokens[:, :t+1]) -> [b, T-1] fp32."""
    logits = model(mb.tokens, segment_ids=mb.segment_ids)  # [b, T, V]
    return shifted_token_logprobs(logits, mb.tokens)


@torch.no_grad()
def forward_values(model: nn.Module, mb: TokenBatch) -> torch.Tensor:
    """Critic values aligned with the targets: V(tokens[:, :t+1]) -> [b, T-1] fp32."""
    return model(mb.tokens, segment_ids=mb.segment_ids)[:, :-1].float()  # [b, T-1]


forward_pair_scores = torch.no_grad()(pair_scores)


@torch.no_grad()
def forward_scores(model: nn.Module, tokens: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
    """Scalar head read at each row's last answer token (section 6): tokens [b, T], last [b] -> [b] fp32."""
    out = model(tokens)  # [b, T]
    return out[torch.arange(tokens.shape[0]), last_index.long()].float()  # [b]
