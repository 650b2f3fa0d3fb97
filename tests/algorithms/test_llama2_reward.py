"""algorithms.llama2_reward: Rc = Rs if IS_SAFETY or Rs < 0.15 else Rh; R~c = WHITEN(LOGIT(Rc))."""

import math

import pytest
import torch

from algorithms import combine_safety_helpfulness, llama2_reward, logit


def test_combine_follows_the_piecewise_rule():
    rs = torch.tensor([0.5, 0.1, 0.9, 0.14])
    rh = torch.tensor([0.8, 0.7, 0.2, 0.99])
    is_safety = torch.tensor([False, False, True, False])
    # helpful prompt + safe answer -> Rh; low safety -> Rs; safety prompt -> Rs; 0.14 < 0.15 -> Rs
    expected = torch.tensor([0.8, 0.1, 0.9, 0.14])
    torch.testing.assert_close(combine_safety_helpfulness(rs, rh, is_safety), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_combine_threshold_boundary_is_strict(dtype):
    below = torch.nextafter(torch.tensor(0.15, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    rs = torch.stack([torch.tensor(0.15, dtype=dtype), below])
    rh = torch.tensor([0.6, 0.6], dtype=dtype)
    got = combine_safety_helpfulness(rs, rh, torch.tensor([False, False]))
    assert got[0] == 0.6  # exactly at the threshold: not "< 0.15", so Rh
    assert got[1] == below  # just below: Rs
    custom = combine_safety_helpfulness(rs, rh, torch.tensor([False, False]), threshold=0.5)
    torch.testing.assert_close(custom, rs)


def test_combine_errors():
    ok = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match=r"rs must be sigmoid scores in \[0, 1\], got 1.5 at index 1"):
        combine_safety_helpfulness(torch.tensor([0.5, 1.5]), ok, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="rh must be sigmoid scores"):
        combine_safety_helpfulness(ok, torch.tensor([float("nan"), 0.5]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="bool"):
        combine_safety_helpfulness(ok, ok, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="same shape"):
        combine_safety_helpfulness(ok, ok, torch.tensor([True]))


def test_logit_inverts_sigmoid_and_clamps_the_ends():
    x = torch.tensor([-3.0, 0.0, 2.5])
    torch.testing.assert_close(logit(torch.sigmoid(x)), x, atol=1e-5, rtol=0)
    ends = logit(torch.tensor([0.0, 1.0], dtype=torch.float64), eps=1e-6)
    expected = math.log(1e-6 / (1 - 1e-6))
    torch.testing.assert_close(ends, torch.tensor([expected, -expected], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"in \[0, 1\], got -0.25"):
        logit(torch.tensor([0.5, -0.25]))
    with pytest.raises(ValueError, match="eps"):
        logit(torch.tensor([0.5]), eps=0.0)


def test_llama2_reward_hand_case():
    rs = torch.tensor([0.5, 0.1, 0.9], dtype=torch.float64)
    rh = torch.tensor([0.8, 0.7, 0.2], dtype=torch.float64)
    is_safety = torch.tensor([False, False, True])
    z = torch.tensor([math.log(4.0), math.log(1 / 9), math.log(9.0)], dtype=torch.float64)
    torch.testing.assert_close(llama2_reward(rs, rh, is_safety, whiten_scores=False), z)
    expected = (z - z.mean()) / z.std(unbiased=False)
    torch.testing.assert_close(llama2_reward(rs, rh, is_safety), expected)


def test_llama2_reward_batch_of_one():
    rs, rh, safe = torch.tensor([0.5]), torch.tensor([0.8]), torch.tensor([False])
    with pytest.raises(ValueError, match="at least 2 scores, got 1"):
        llama2_reward(rs, rh, safe)
    torch.testing.assert_close(llama2_reward(rs, rh, safe, whiten_scores=False), torch.tensor([math.log(4.0)]))
