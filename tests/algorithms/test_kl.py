"""algorithms.kl: per-token KL estimators (LLAMA2_SPEC.md section 8)."""

import math

import pytest
import torch

from algorithms import kl_estimate, kl_k1, kl_k3


def test_k1_and_k3_hand_values():
    logp = torch.tensor([[math.log(0.5), math.log(0.25)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.25)]])
    torch.testing.assert_close(kl_k1(logp, ref), torch.tensor([[math.log(2.0), 0.0]]))
    # log r = log(0.5) on the first token: k3 = 0.5 - 1 - log 0.5
    torch.testing.assert_close(kl_k3(logp, ref), torch.tensor([[0.5 - 1 - math.log(0.5), 0.0]]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), kl_k3(logp, ref))
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), kl_k1(logp, ref))


def test_k3_is_non_negative_and_both_are_unbiased():
    # sample from p, estimate KL(p || q) and compare with the exact value
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(6, generator=g), 0)
    q = torch.softmax(torch.randn(6, generator=g), 0)
    exact = (p * (p.log() - q.log())).sum()
    samples = torch.multinomial(p, 200_000, replacement=True, generator=g)
    logp, ref = p.log()[samples], q.log()[samples]
    k3 = kl_k3(logp, ref)
    assert (k3 >= 0).all()
    torch.testing.assert_close(k3.mean(), exact, atol=0.01, rtol=0)
    torch.testing.assert_close(kl_k1(logp, ref).mean(), exact, atol=0.01, rtol=0)


def test_kl_errors():
    with pytest.raises(ValueError, match="unknown KL estimator kind 'k2'"):
        kl_estimate(torch.zeros(2), torch.zeros(2), "k2")
    with pytest.raises(ValueError, match="same shape"):
        kl_k1(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="same shape"):
        kl_k3(torch.zeros(2, 3), torch.zeros(3))
