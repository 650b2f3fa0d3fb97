"""algorithms.ppo: clipped policy surrogate and clipped value loss."""

import math

import pytest
import torch

from algorithms import ppo_policy_loss, value_loss


def _slow_policy_loss(logp, old_logp, adv, mask, clip):
    """PPO's objective as written in the paper, min(r A, clip(r) A), negated and averaged."""
    terms = []
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if mask[b, t]:
                r = math.exp(float(logp[b, t] - old_logp[b, t]))
                a = float(adv[b, t])
                terms.append(-min(r * a, min(max(r, 1 - clip), 1 + clip) * a))
    return sum(terms) / len(terms)


def test_policy_loss_matches_slow_reference():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 6, generator=g)
    old = logp + 0.4 * torch.randn(4, 6, generator=g)
    adv = torch.randn(4, 6, generator=g)
    mask = torch.tensor([[1] * 6, [0, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]])
    loss, stats = ppo_policy_loss(logp, old, adv, mask, clip=0.2)
    torch.testing.assert_close(loss, torch.tensor(_slow_policy_loss(logp, old, adv, mask, 0.2)))
    assert 0 < stats["clip_frac"] < 1 and stats["approx_kl"] > 0


def test_policy_loss_on_policy_is_minus_mean_advantage():
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    adv = torch.tensor([[1.0, -3.0, 100.0]])
    loss, stats = ppo_policy_loss(logp, logp.clone(), adv, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(loss, torch.tensor(1.0))
    assert stats["clip_frac"] == 0 and stats["approx_kl"] == 0 and stats["ratio_mean"] == 1


def test_policy_loss_clipping_and_gradients():
    # ratios 1.5, 1.5, 0.5 with advantages +1, -1, +1 and clip 0.2
    old = torch.zeros(1, 4)
    logp = torch.tensor([[math.log(1.5), math.log(1.5), math.log(0.5), 0.0]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0, 1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, stats = ppo_policy_loss(logp, old, adv, mask, clip=0.2)
    # token 0: clipped at 1.2 -> -1.2; token 1: unclipped 1.5 (pessimistic); token 2: unclipped -0.5
    torch.testing.assert_close(loss, torch.tensor((-1.2 + 1.5 - 0.5) / 3))
    torch.testing.assert_close(stats["clip_frac"], torch.tensor(1 / 3))
    torch.testing.assert_close(stats["ratio_mean"], torch.tensor((1.5 + 1.5 + 0.5) / 3))
    expected_kl = sum(r - 1 - math.log(r) for r in (1.5, 1.5, 0.5)) / 3
    torch.testing.assert_close(stats["approx_kl"], torch.tensor(expected_kl))
    loss.backward()
    # d loss / d logp = -A r / n on unclipped tokens; 0 where clipped and on the masked token
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 1.5 / 3, -0.5 / 3, 0.0]]))
    assert torch.isfinite(logp.grad).all()
    assert not stats["clip_frac"].requires_grad


def test_policy_loss_errors():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="no valid token"):
        ppo_policy_loss(z, z, z, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="same shape"):
        ppo_policy_loss(z, z, torch.zeros(2, 2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="clip must be > 0"):
        ppo_policy_loss(z, z, z, torch.ones(2, 3), clip=0.0)


def test_value_loss_hand_cases():
    values = torch.tensor([[1.5, 1.5, 9.0]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 0.0]])
    returns = torch.tensor([[0.0, 2.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, stats = value_loss(values, old, returns, mask, clip=0.2)
    # token 0: max(1.5^2, 1.2^2) = 2.25; token 1: max(0.5^2, 0.8^2) = 0.64 (clipped side active)
    torch.testing.assert_close(loss, torch.tensor(0.5 * (2.25 + 0.64) / 2))
    torch.testing.assert_close(stats["clip_frac"], torch.tensor(0.5))
    torch.testing.assert_close(stats["value_mean"], torch.tensor(1.5))
    torch.testing.assert_close(stats["returns_mean"], torch.tensor(1.0))
    loss.backward()
    # gradient (v - R) / n on the unclipped token; 0 on the clipped and the masked token
    torch.testing.assert_close(values.grad, torch.tensor([[1.5 / 2, 0.0, 0.0]]))


def test_value_loss_unclipped_is_half_mse():
    g = torch.Generator().manual_seed(1)
    values, old, returns = (torch.randn(3, 5, generator=g) for _ in range(3))
    mask = torch.ones(3, 5)
    loss, stats = value_loss(values, old, returns, mask, clip=None)
    torch.testing.assert_close(loss, 0.5 * ((values - returns) ** 2).mean())
    assert stats["clip_frac"] == 0
    clipped_loss, _ = value_loss(values, old, returns, mask, clip=0.1)
    assert clipped_loss >= loss  # the clipped objective is a pessimistic bound


def test_value_loss_errors():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="no valid token"):
        value_loss(z, z, z, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="same shape"):
        value_loss(z, z, torch.zeros(3, 2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="clip must be > 0 or None"):
        value_loss(z, z, z, torch.ones(2, 3), clip=-0.1)
