"""Per-token estimators of KL(pi_theta || pi_0) from samples of pi_theta (LLAMA2_SPEC.md section 8).

The paper does not state which estimator it used; both common ones are offered and chosen by config.
With log r = ref_logp - logp (r = pi_0 / pi_theta evaluated on a token sampled from pi_theta):
  k1 = -log r              unbiased, can be negative per token;
  k3 = (r - 1) - log r     unbiased, always >= 0, lower variance (J. Schulman, "Approximating KL
                           Divergence", 2020).
"""

from __future__ import annotations

import torch

from algorithms.core import _require_same_shape

__all__ = ["KL_KINDS", "kl_k1", "kl_k3", "kl_estimate"]

KL_KINDS = ("k1", "k3")


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = logp - ref_logp; logp, ref_logp [B, T] (any equal shapes) -> same shape."""
    _require_same_shape("kl_k1", logp=logp, ref_logp=ref_logp)
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = exp(ref - logp) - (ref - logp) - 1 >= 0; logp, ref_logp [B, T] -> [B, T].

    No clamping of the log-ratio: an overflow to inf reveals a broken reference or padding that the
    caller forgot to mask, and is not hidden here.
    """
    _require_same_shape("kl_k3", logp=logp, ref_logp=ref_logp)
    log_ratio = ref_logp - logp
    # expm1(x) - x == exp(x) - 1 - x, without cancellation when x is near 0
    return torch.expm1(log_ratio) - log_ratio


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Dispatch to `kl_k1` or `kl_k3` by name; logp, ref_logp [B, T] -> [B, T]."""
    if kind == "k1":
        return kl_k1(logp, ref_logp)
    if kind == "k3":
        return kl_k3(logp, ref_logp)
    raise ValueError(f"kl_estimate: unknown KL estimator kind {kind!r}; expected one of {KL_KINDS}")
