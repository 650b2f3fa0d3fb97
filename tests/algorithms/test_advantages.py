"""algorithms.advantages: KL-shaped rewards and GAE, against hand cases and a slow per-row loop."""

import random

import pytest
import torch

from algorithms import gae, kl_k3, kl_penalized_rewards, last_valid_index


def test_kl_penalized_rewards_hand_case():
    logp = torch.tensor([[-1.0, -1.0, -2.0, 0.0], [-1.0, -0.5, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -1.0, 5.0], [-2.0, -1.0, 9.0, 9.0]])
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0]])
    scores = torch.tensor([3.0, -1.0])
    rewards, kl = kl_penalized_rewards(scores, logp, ref, mask, beta=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.0, 0.0, -1.0, 0.0], [1.0, 0.5, 0.0, 0.0]]))
    # score on the last response token (index 2 in row 0, index 1 in row 1)
    expected = torch.tensor([[0.0, 0.0, 0.1 + 3.0, 0.0], [-0.1, -0.05 - 1.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)


def test_kl_penalized_rewards_k3_and_masked_inf():
    logp = torch.tensor([[-1.0, -2.0, float("-inf")]])
    ref = torch.tensor([[-2.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    rewards, kl = kl_penalized_rewards(torch.tensor([0.5]), logp, ref, mask, beta=1.0, kind="k3")
    k3 = kl_k3(logp[:, :2], ref[:, :2])
    torch.testing.assert_close(kl, torch.cat([k3, torch.zeros(1, 1)], dim=1))
    torch.testing.assert_close(rewards[0, :2], torch.tensor([-k3[0, 0], -k3[0, 1] + 0.5]))
    assert rewards[0, 2] == 0


def test_kl_penalized_rewards_errors():
    z = torch.zeros(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"rows \[1, 2\] have no response token"):
        kl_penalized_rewards(torch.zeros(3), z, z, mask, beta=0.1)
    with pytest.raises(ValueError, match=r"scores must have shape \[B\]"):
        kl_penalized_rewards(torch.zeros(2), z, z, torch.ones(3, 4), beta=0.1)
    with pytest.raises(ValueError, match="same shape"):
        kl_penalized_rewards(torch.zeros(3), z, torch.zeros(3, 3), torch.ones(3, 4), beta=0.1)
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalized_rewards(torch.zeros(3), z, z, torch.ones(3, 4), beta=0.1, kind="kl")
    with pytest.raises(ValueError, match="beta must be >= 0"):
        kl_penalized_rewards(torch.zeros(3), z, z, torch.ones(3, 4), beta=-1.0)


def test_last_valid_index():
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 1, 0]])
    assert last_valid_index(mask).tolist() == [1, 3, 2]


def _slow_gae(rewards, values, mask, gamma, lam):
    """Obviously-correct reference: each row's block of 1s is one episode ending with value 0."""
    adv = torch.zeros_like(rewards, dtype=torch.float64)
    for b in range(rewards.shape[0]):
        idx = [t for t in range(rewards.shape[1]) if mask[b, t]]
        running = 0.0
        for j in reversed(range(len(idx))):
            t = idx[j]
            next_value = float(values[b, idx[j + 1]]) if j + 1 < len(idx) else 0.0
            delta = float(rewards[b, t]) + gamma * next_value - float(values[b, t])
            running = delta + gamma * lam * running
            adv[b, t] = running
    returns = torch.where(mask.bool(), adv + values.double(), torch.zeros((), dtype=torch.float64))
    return adv, returns


def _random_block_masks(B, T, rng):
    mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        start = rng.randrange(0, T)
        end = rng.randrange(start, T)
        mask[b, start : end + 1] = 1
    return mask


@pytest.mark.parametrize("gamma, lam", [(1.0, 1.0), (1.0, 0.95), (0.9, 0.5), (0.0, 0.3)])
def test_gae_matches_slow_loop(gamma, lam):
    rng = random.Random(0)
    g = torch.Generator().manual_seed(0)
    B, T = 8, 12
    rewards, values = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    mask = _random_block_masks(B, T, rng)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    ref_adv, ref_ret = _slow_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, ref_adv.float())
    torch.testing.assert_close(ret, ref_ret.float())
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_gae_with_gamma_lam_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[9.0, 1.0, 2.0, 3.0, 7.0]])
    values = torch.tensor([[5.0, 0.5, 1.0, 1.5, 8.0]])
    mask = torch.tensor([[0, 1, 1, 1, 0]])  # prompt token first, padding last
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 6.0 - 0.5, 5.0 - 1.0, 3.0 - 1.5, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.0, 6.0, 5.0, 3.0, 0.0]]))


def test_gae_lambda_zero_is_one_step_td():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 1.0, 4.0]])
    adv, _ = gae(rewards, values, torch.ones(1, 3), gamma=0.5, lam=0.0)
    torch.testing.assert_close(adv, torch.tensor([[1.0 + 0.5 * 1.0 - 0.5, 2.0 + 0.5 * 4.0 - 1.0, 3.0 - 4.0]]))


def test_gae_edge_cases():
    # an all-masked row is all zero; a one-token episode has A = r - V
    rewards = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    values = torch.tensor([[0.5, 0.5], [1.0, float("nan")]])
    adv, ret = gae(rewards, values, torch.tensor([[0, 0], [1, 0]]), gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.0, 0.0], [3.0, 0.0]]))


def test_gae_errors():
    z = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"rows \[1\] have a mask that is not one contiguous block"):
        gae(z, z, torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]]), 1.0, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        gae(z, torch.zeros(2, 3), torch.ones(2, 4), 1.0, 1.0)
    with pytest.raises(ValueError, match="gamma and lam"):
        gae(z, z, torch.ones(2, 4), 1.5, 1.0)
    with pytest.raises(ValueError, match="2 dims"):
        gae(torch.zeros(4), torch.zeros(4), torch.ones(4), 1.0, 1.0)
