"""Supervised fine-tuning loss (LLAMA2_SPEC.md section 4): next-token cross-entropy on answer tokens only.

The same loss trains rejection-sampling (section 7), Ghost Attention (section 9) and context
distillation (section 10) data; those stages differ only in which tokens carry loss_mask 1.
"""

from __future__ import annotations

import torch

from algorithms.core import (
    _as_bool_mask,
    _require_ndim,
    _require_same_shape,
    masked_sum,
    shifted_token_logprobs,
)

__all__ = ["sft_loss"]


def sft_loss(logits: torch.Tensor, tokens: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over trainable target tokens -> 0-d fp32 tensor.

    logits [B, T, V], tokens [B, T], loss_mask [B, T] (0/1 or bool, 1 = answer token to learn).
    Position t predicts token t+1, so a prediction counts when its TARGET is trainable:
    loss_mask[:, 1:] selects the terms (prompt tokens are masked, section 4). The mean is over all
    trainable tokens of the batch (not per sequence first), so long answers weigh more, as in
    packed-sequence SFT. A batch without a trainable target token raises ValueError.
    """
    _require_ndim("sft_loss", "tokens", tokens, 2)
    _require_same_shape("sft_loss", tokens=tokens, loss_mask=loss_mask)
    target_mask = _as_bool_mask("sft_loss", loss_mask[:, 1:], tokens[:, 1:], name="loss_mask[:, 1:]")
    n_targets = int(target_mask.sum())
    if n_targets == 0:
        raise ValueError("sft_loss: no trainable target token in the batch (loss_mask[:, 1:] is all 0)")
    logp = shifted_token_logprobs(logits, tokens)  # [B, T-1]
    return -masked_sum(logp, target_mask) / n_targets
