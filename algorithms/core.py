"""Shared tensor math: token log-probs, masked reductions, whitening, entropy.

Notation: B = batch rows, T = sequence positions, V = vocabulary size. Masks are bool or 0/1 tensors
of the same shape as the data they select; 1/True marks a position that counts.
"""

from __future__ import annotations

import torch

__all__ = [
    "token_logprobs",
    "shifted_token_logprobs",
    "masked_sum",
    "masked_mean",
    "whiten",
    "entropy_from_logits",
]


# --------------------------------------------------------------------------------------------
# validation helpers (used by every module of the package)
# --------------------------------------------------------------------------------------------


def _require_same_shape(where: str, **tensors: torch.Tensor) -> None:
    """Raise ValueError naming every argument's shape if they are not all equal."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name}={shape}" for name, shape in shapes.items())
        raise ValueError(f"{where}: expected tensors of the same shape, got {listed}")


def _require_ndim(where: str, name: str, t: torch.Tensor, ndim: int) -> None:
    if t.dim() != ndim:
        raise ValueError(f"{where}: expected {name} with {ndim} dims, got shape {tuple(t.shape)}")


def _as_bool_mask(where: str, mask: torch.Tensor, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Check that `mask` has the shape of `like` and holds only 0/1 (or bools); return it as bool.

    Fractional masks are rejected rather than silently treated as weights.
    """
    _require_same_shape(where, x=like, **{name: mask})
    if mask.dtype == torch.bool:
        return mask
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{where}: {name} must contain only 0/1 or bools")
    return mask != 0


# --------------------------------------------------------------------------------------------
# log-probabilities
# --------------------------------------------------------------------------------------------


def _gathered_minus_logsumexp(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    logits = logits.float()  # [b, T, V] fp32: logsumexp in bf16 loses ~2 digits
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # [b, T]
    return picked - torch.logsumexp(logits, dim=-1)  # [b, T]


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each given token under the logits at the same position.

    logits [B, T, V] (any float dtype), tokens [B, T] integer -> [B, T] fp32.
    No shift happens here: to score next tokens pass `logits[:, :-1]` and `tokens[:, 1:]`
    (or use `shifted_token_logprobs`). Computed as gathered logit minus logsumexp, so the full
    [B, T, V] log-softmax is never materialised; low-precision logits are upcast one row at a time.
    """
    where = "token_logprobs"
    _require_ndim(where, "logits", logits, 3)
    if tuple(tokens.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"{where}: tokens shape {tuple(tokens.shape)} must equal logits.shape[:2] {tuple(logits.shape[:2])}"
        )
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise ValueError(f"{where}: tokens must be an integer tensor, got {tokens.dtype}")
    vocab = logits.shape[-1]
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(
            f"{where}: token ids must be in [0, {vocab}), got range [{int(tokens.min())}, {int(tokens.max())}]"
        )
    tokens = tokens.long()
    if logits.dtype == torch.float32:
        return _gathered_minus_logsumexp(logits, tokens)
    rows = [_gathered_minus_logsumexp(logits[i : i + 1], tokens[i : i + 1]) for i in range(logits.shape[0])]
    return torch.cat(rows, dim=0) if rows else logits.new_zeros(tokens.shape, dtype=torch.float32)


def shifted_token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of tokens[:, 1:] given their prefix: logits [B, T, V], tokens [B, T] -> [B, T-1].

    Position t of the output scores token t+1 with the logits produced at position t.
    """
    if logits.dim() != 3 or logits.shape[1] < 2:
        raise ValueError(
            f"shifted_token_logprobs: expected logits [B, T, V] with T >= 2, got shape {tuple(logits.shape)}"
        )
    return token_logprobs(logits[:, :-1], tokens[:, 1:])


# --------------------------------------------------------------------------------------------
# masked reductions and whitening
# --------------------------------------------------------------------------------------------


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of x over positions where mask is 1; x and mask have the same shape.

    dim=None sums everything (0-d result); an int sums that dim only. Masked entries are
    replaced by 0 with `where`, so inf/NaN padding in x does not leak into the sum or its gradient.
    """
    m = _as_bool_mask("masked_sum", mask, x)
    kept = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over positions where mask is 1; same shape rules as `masked_sum`.

    Where no position is valid (the whole tensor for dim=None, or a whole slice along `dim`)
    the result is 0, not NaN: an empty row contributes nothing instead of poisoning a batch mean.
    """
    m = _as_bool_mask("masked_mean", mask, x)
    total = masked_sum(x, m, dim=dim)
    count = m.sum() if dim is None else m.sum(dim=dim)
    return total / count.clamp(min=1).to(total.dtype)


def whiten(
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    shift_mean: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the valid elements of x (any shape -> same shape).

    Statistics are taken over all valid elements together, with the biased variance
    (unbiased=False, i.e. divide by n). shift_mean=False adds the mean back, so only the scale
    changes. Masked positions are returned as 0. Fewer than 2 valid elements raise ValueError:
    a spread cannot be estimated from one value.
    """
    m = torch.ones_like(x, dtype=torch.bool) if mask is None else _as_bool_mask("whiten", mask, x)
    n = int(m.sum())
    if n < 2:
        raise ValueError(f"whiten: need at least 2 valid elements to estimate a std, got {n}")
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m, out, torch.zeros((), dtype=out.dtype, device=out.device))


# --------------------------------------------------------------------------------------------
# entropy
# --------------------------------------------------------------------------------------------


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax distribution at each position: logits [B, T, V] -> [B, T] fp32.

    H = logsumexp(z) - sum_v softmax(z)_v * z_v, which avoids log(0) for vanishing probabilities;
    logits of -inf (banned tokens) have probability 0 and contribute 0.
    """
    _require_ndim("entropy_from_logits", "logits", logits, 3)
    z = logits.float()  # [B, T, V]
    probs = torch.softmax(z, dim=-1)  # [B, T, V]
    p_z = torch.where(probs > 0, probs * z, torch.zeros((), dtype=z.dtype, device=z.device))  # [B, T, V]
    return torch.logsumexp(z, dim=-1) - p_z.sum(dim=-1)
