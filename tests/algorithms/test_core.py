"""algorithms.core: log-probs, masked reductions, whitening, entropy."""

import math

import pytest
import torch
import torch.nn.functional as F

from algorithms import (
    entropy_from_logits,
    masked_mean,
    masked_sum,
    shifted_token_logprobs,
    token_logprobs,
    whiten,
)


def _logits(B=3, T=5, V=11, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(B, T, V, generator=g)).to(dtype)


def test_token_logprobs_matches_log_softmax_gather():
    logits = _logits()
    tokens = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(1))
    expected = F.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    got = token_logprobs(logits, tokens)
    assert got.shape == (3, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_token_logprobs_hand_case():
    # two-token vocabulary with logits (0, log 3): p = (1/4, 3/4)
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    got = token_logprobs(logits, torch.tensor([[0, 1]]))
    torch.testing.assert_close(got, torch.tensor([[math.log(0.25), math.log(0.75)]]))


def test_token_logprobs_bf16_is_computed_in_fp32():
    logits = _logits(dtype=torch.bfloat16)
    tokens = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(2))
    got = token_logprobs(logits, tokens)
    expected = F.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_token_logprobs_gradient_matches_log_softmax():
    logits = _logits().requires_grad_()
    tokens = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(3))
    token_logprobs(logits, tokens).sum().backward()
    ref = logits.detach().clone().requires_grad_()
    F.log_softmax(ref, -1).gather(-1, tokens.unsqueeze(-1)).sum().backward()
    torch.testing.assert_close(logits.grad, ref.grad)


@pytest.mark.parametrize(
    "tokens, match",
    [
        (torch.zeros(3, 4, dtype=torch.long), "must equal logits.shape"),
        (torch.zeros(3, 5), "integer"),
        (torch.full((3, 5), 11), r"\[0, 11\)"),
        (torch.full((3, 5), -1), r"\[0, 11\)"),
    ],
)
def test_token_logprobs_bad_tokens(tokens, match):
    with pytest.raises(ValueError, match=match):
        token_logprobs(_logits(), tokens)


def test_shifted_token_logprobs_scores_next_token():
    logits = _logits()
    tokens = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(4))
    got = shifted_token_logprobs(logits, tokens)
    assert got.shape == (3, 4)
    # position t scores token t+1 with the logits of position t
    for b in range(3):
        for t in range(4):
            expected = F.log_softmax(logits[b, t], -1)[tokens[b, t + 1]]
            torch.testing.assert_close(got[b, t], expected)
    with pytest.raises(ValueError, match="T >= 2"):
        shifted_token_logprobs(logits[:, :1], tokens[:, :1])


def test_masked_sum_and_mean_hand_case():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert masked_sum(x, mask).item() == 3.0
    assert masked_mean(x, mask).item() == 1.5
    torch.testing.assert_close(masked_sum(x, mask, dim=1), torch.tensor([3.0, 0.0]))
    # the all-masked row has mean 0, not NaN
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([1.5, 0.0]))
    torch.testing.assert_close(masked_mean(x, mask.bool(), dim=0), torch.tensor([1.0, 2.0, 0.0]))
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0


def test_masked_reductions_ignore_inf_padding_and_its_gradient():
    x = torch.tensor([1.0, float("-inf"), float("nan")], requires_grad=True)
    mask = torch.tensor([True, False, False])
    out = masked_mean(x, mask)
    out.backward()
    assert out.item() == 1.0
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 0.0, 0.0]))


def test_masked_reductions_reject_bad_masks():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="same shape"):
        masked_sum(x, torch.ones(2, 2))
    with pytest.raises(ValueError, match="same shape"):
        masked_mean(x, torch.ones(3))
    with pytest.raises(ValueError, match="only 0/1"):
        masked_mean(x, torch.full((2, 3), 0.5))


def test_whiten_matches_biased_statistics():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -7.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    valid = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, -7.0])
    mean, std = valid.mean(), valid.std(unbiased=False)
    got = whiten(x, mask)
    torch.testing.assert_close(got[:, :3].flatten(), (valid - mean) / std)
    assert (got[:, 3] == 0).all()
    torch.testing.assert_close(got[mask.bool()].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    # shift_mean=False rescales without centring
    kept = whiten(x, mask, shift_mean=False)
    torch.testing.assert_close(kept[:, :3].flatten(), (valid - mean) / std + mean)


def test_whiten_without_mask_and_constant_input():
    x = torch.tensor([2.0, 4.0])
    torch.testing.assert_close(whiten(x), torch.tensor([-1.0, 1.0]))
    # a constant batch has zero spread: eps keeps the result finite (all zeros)
    assert (whiten(torch.full((4,), 3.0)) == 0).all()


def test_whiten_needs_two_valid_elements():
    with pytest.raises(ValueError, match="at least 2 valid elements"):
        whiten(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="got 1"):
        whiten(torch.tensor([1.0, 2.0]), torch.tensor([1, 0]))


def test_entropy_matches_categorical():
    logits = _logits()
    expected = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(entropy_from_logits(logits), expected)
    uniform = torch.zeros(1, 1, 8)
    torch.testing.assert_close(entropy_from_logits(uniform), torch.tensor([[math.log(8.0)]]))


def test_entropy_with_banned_tokens_is_finite():
    logits = torch.tensor([[[0.0, 0.0, float("-inf")]]])
    torch.testing.assert_close(entropy_from_logits(logits), torch.tensor([[math.log(2.0)]]))
    with pytest.raises(ValueError, match="3 dims"):
        entropy_from_logits(torch.zeros(2, 3))
