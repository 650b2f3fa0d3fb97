"""algorithms.sft: answer-only next-token cross-entropy (LLAMA2_SPEC.md section 4)."""

import math

import pytest
import torch
import torch.nn.functional as F

from algorithms import sft_loss


def test_sft_loss_matches_cross_entropy_with_ignore_index():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 9, generator=g)
    tokens = torch.randint(0, 9, (2, 6), generator=g)
    loss_mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]])
    targets = tokens[:, 1:].masked_fill(loss_mask[:, 1:] == 0, -100)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 9), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(sft_loss(logits, tokens, loss_mask), expected)


def test_sft_loss_hand_case_uses_target_mask():
    # uniform logits over 4 tokens: every trainable target costs log 4, whatever its id
    logits = torch.zeros(1, 3, 4)
    tokens = torch.tensor([[1, 2, 3]])
    # only the first token is marked: it is never a target, so nothing is trainable
    with pytest.raises(ValueError, match="no trainable target token"):
        sft_loss(logits, tokens, torch.tensor([[1, 0, 0]]))
    torch.testing.assert_close(sft_loss(logits, tokens, torch.tensor([[0, 0, 1]])), torch.tensor(math.log(4.0)))


def test_sft_loss_mean_is_over_tokens_not_sequences():
    # row 0: one target with p=1/2; row 1: three targets with p=1/4 -> (log 2 + 3 log 4) / 4
    logits = torch.zeros(2, 4, 4)
    logits[0, :, 2:] = -float("inf")  # row 0 is uniform over tokens {0, 1}
    tokens = torch.tensor([[0, 1, 0, 0], [0, 1, 2, 3]])
    loss_mask = torch.tensor([[0, 1, 0, 0], [0, 1, 1, 1]])
    expected = (math.log(2.0) + 3 * math.log(4.0)) / 4
    torch.testing.assert_close(sft_loss(logits, tokens, loss_mask), torch.tensor(expected))


def test_sft_loss_gradient_is_zero_on_prompt_predictions():
    logits = torch.randn(1, 5, 7, generator=torch.Generator().manual_seed(1), requires_grad=True)
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    sft_loss(logits, tokens, torch.tensor([[0, 0, 0, 1, 1]])).backward()
    # logits at positions 0, 1 predict prompt tokens, position 4 predicts nothing
    assert (logits.grad[0, [0, 1, 4]] == 0).all()
    assert logits.grad[0, [2, 3]].abs().sum() > 0


def test_sft_loss_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        sft_loss(torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 2))
    with pytest.raises(ValueError, match="2 dims"):
        sft_loss(torch.zeros(1, 3, 4), torch.zeros(3, dtype=torch.long), torch.ones(3))
