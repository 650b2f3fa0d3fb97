"""Typed batches that cross process boundaries (STYLE.md habit 10).

Each batch is a frozen dataclass of tensors whose first dimension is the row (sequence or pair)
dimension, so one generic `slice`/`split` serves ranks (equal shards) and micro-batches.
Shapes are validated on construction: a wrong shape raises a ValueError naming the field.

Alignment convention (shared with algorithms/): per-token RL tensors are [B, T-1] and position t
describes the prediction of target token tokens[:, t+1] from the prefix tokens[:, :t+1].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Self

import torch

__all__ = ["TokenBatch", "PairBatch", "PPOBatch", "Sample", "common_prefix_len", "pad_sequences", "shared_prefix_rows",
           "split_rows"]


def _check_int_2d(where: str, name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 2:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{where}.{name}: expected a 2-D tensor [B, T], got {got}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{where}.{name}: expected an integer tensor, got {t.dtype}")


def _check_shape(where: str, name: str, t: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{where}.{name}: expected a tensor of shape {shape}, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{where}.{name}: expected shape {shape}, got {tuple(t.shape)}")


def _check_last_index(where: str, name: str, last: torch.Tensor, tokens: torch.Tensor) -> None:
    _check_shape(where, name, last, (tokens.shape[0],))
    if last.dtype.is_floating_point or last.dtype == torch.bool:
        raise ValueError(f"{where}.{name}: expected an integer tensor, got {last.dtype}")
    bad = ((last < 0) | (last >= tokens.shape[1])).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"{where}.{name}: rows {bad} point outside [0, {tokens.shape[1]}) (values {last[bad].tolist()})"
        )


class _Rows:
    """Row slicing shared by the batches: every tensor field is cut along dim 0."""

    def __len__(self) -> int:
        return int(getattr(self, dataclasses.fields(self)[0].name).shape[0])  # type: ignore[arg-type]

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Self:
        """The same batch type with `fn` applied to every tensor field (None fields stay None)."""
        values = {
            f.name: (fn(v) if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }
        return type(self)(**values)

    def slice(self, i: int, j: int) -> Self:
        """Rows [i, j) as a batch of the same type (views, no copy)."""
        return self._map(lambda v: v[i:j])

    def take(self, index: torch.Tensor) -> Self:
        """Rows `index` (a 1-D long tensor), in that order, as a batch of the same type (copies)."""
        return self._map(lambda v: v.index_select(0, index))

    def split(self, n: int) -> list[Self]:
        """n equal shards in order (one per rank); B must be divisible by n."""
        return split_rows(self, n)

    def to(self, device: torch.device | str) -> Self:
        """The same batch with every tensor on `device`."""
        return self._map(lambda v: v.to(device))

    def micro_batches(self, size: int) -> list[Self]:
        """Consecutive chunks of at most `size` rows (gradient accumulation)."""
        if size <= 0:
            raise ValueError(f"micro-batch size must be positive, got {size}")
        return [self.slice(i, min(i + size, len(self))) for i in range(0, len(self), size)]


def split_rows(batch: _Rows, n: int, what: str = "batch") -> list:
    """Split `batch` into n equal consecutive shards; a remainder raises a clear ValueError."""
    rows = len(batch)
    if n <= 0:
        raise ValueError(f"cannot split a {what} into {n} shards; expected a positive number")
    if rows % n != 0:
        raise ValueError(
            f"{type(batch).__name__} of {rows} rows is not divisible by {n} ranks ({what}); "
            f"pad it to a multiple of {n} (e.g. with rows whose mask is all 0) or change the batch size"
        )
    step = rows // n
    return [batch.slice(k * step, (k + 1) * step) for k in range(n)]


@dataclass(frozen=True)
class TokenBatch(_Rows):
    """Sequences for next-token training and scoring (SFT, rejection sampling, GAtt, distillation)."""

    tokens: torch.Tensor  # [B, T] long
    loss_mask: torch.Tensor  # [B, T] float, 1 where the TOKEN at t is a trainable target
    segment_ids: torch.Tensor | None = None  # [B, T] long: packed examples (None = one per row)

    def __post_init__(self) -> None:
        _check_int_2d("TokenBatch", "tokens", self.tokens)
        _check_shape("TokenBatch", "loss_mask", self.loss_mask, tuple(self.tokens.shape))
        if self.segment_ids is not None:
            _check_shape("TokenBatch", "segment_ids", self.segment_ids, tuple(self.tokens.shape))
            _check_int_2d("TokenBatch", "segment_ids", self.segment_ids)

    @classmethod
    def from_lists(
        cls, tokens: list[list[int]], loss_mask: list[list[int]] | None = None, pad_id: int = 0
    ) -> TokenBatch:
        """Right-pad ragged rows; padding and (if loss_mask is None) nothing is trainable."""
        padded = pad_sequences(tokens, pad_id)  # [B, T]
        mask = torch.zeros(padded.shape, dtype=torch.float32)  # [B, T]
        if loss_mask is not None:
            if len(loss_mask) != len(tokens):
                raise ValueError(f"TokenBatch.from_lists: {len(loss_mask)} mask rows for {len(tokens)} token rows")
            for row, (t, m) in enumerate(zip(tokens, loss_mask)):
                if len(t) != len(m):
                    raise ValueError(f"TokenBatch.from_lists: row {row} has {len(t)} tokens but {len(m)} mask values")
                mask[row, : len(m)] = torch.tensor(m, dtype=torch.float32)
        return cls(tokens=padded, loss_mask=mask)


@dataclass(frozen=True)
class PairBatch(_Rows):
    """Preference pairs for reward-model training (LLAMA2_SPEC.md sections 5-6).

    The scalar head is read at the last token of each answer (`*_last`). chosen/rejected may be
    padded to different lengths. Safety labels are per response, (chosen safe, rejected unsafe) etc.
    """

    chosen: torch.Tensor  # [N, Tc] long
    chosen_last: torch.Tensor  # [N] long, index of the last real token of each chosen row
    rejected: torch.Tensor  # [N, Tr] long
    rejected_last: torch.Tensor  # [N] long
    margin: torch.Tensor  # [N] float, m(rating) of the margin loss (0 = plain ranking loss)
    rating: torch.Tensor | None = None  # [N] long rating ids (algorithms.RATINGS order), for accuracy per level
    chosen_safe: torch.Tensor | None = None  # [N] bool, safety RM auxiliary labels
    rejected_safe: torch.Tensor | None = None  # [N] bool
    # [N] long: how many leading tokens the two rows share (the prompt, at least). Given, each pair runs
    # as ONE row, prefix + chosen + rejected, the rejected tokens attending to the prefix but not to the
    # chosen ones (`shared_prefix_rows`): the same scores for ~30% fewer tokens on the demo's pairs.
    prefix_len: torch.Tensor | None = None

    def __post_init__(self) -> None:
        w = "PairBatch"
        _check_int_2d(w, "chosen", self.chosen)
        _check_int_2d(w, "rejected", self.rejected)
        n = self.chosen.shape[0]
        _check_shape(w, "rejected", self.rejected, (n, self.rejected.shape[1]))
        _check_last_index(w, "chosen_last", self.chosen_last, self.chosen)
        _check_last_index(w, "rejected_last", self.rejected_last, self.rejected)
        _check_shape(w, "margin", self.margin, (n,))
        if self.rating is not None:
            _check_shape(w, "rating", self.rating, (n,))
        if (self.chosen_safe is None) != (self.rejected_safe is None):
            raise ValueError(f"{w}: chosen_safe and rejected_safe must be given together (both or neither)")
        for name in ("chosen_safe", "rejected_safe"):
            value = getattr(self, name)
            if value is not None:
                _check_shape(w, name, value, (n,))
                if value.dtype != torch.bool:
                    raise ValueError(f"{w}.{name}: expected a bool tensor, got {value.dtype}")
        if self.prefix_len is not None:
            _check_shape(w, "prefix_len", self.prefix_len, (n,))
            # each answer keeps at least its last token (where its score is read) out of the prefix
            room = torch.minimum(self.chosen_last, self.rejected_last)
            bad = ((self.prefix_len < 0) | (self.prefix_len > room)).nonzero().flatten().tolist()
            if bad:
                raise ValueError(f"{w}.prefix_len: rows {bad} are outside [0, min(chosen_last, rejected_last)] "
                                 f"(values {self.prefix_len[bad].tolist()})")
            width = int(self.prefix_len.max()) if n else 0
            cols = torch.arange(width)[None, :] < self.prefix_len[:, None]  # [N, width]
            differs = ((self.chosen[:, :width] != self.rejected[:, :width]) & cols).any(dim=1)
            bad = differs.nonzero().flatten().tolist()
            if bad:
                raise ValueError(f"{w}.prefix_len: rows {bad} say their chosen and rejected tokens share a prefix "
                                 "that they do not share")

    @property
    def has_safety_labels(self) -> bool:
        return self.chosen_safe is not None

    def length_order(self) -> torch.Tensor:
        """Row indices ordered (stably) by each pair's longer answer, or by its one shared-prefix row's width."""
        if self.prefix_len is not None:  # the width of each pair's one shared-prefix row
            longer = self.chosen_last + self.rejected_last + 1 - self.prefix_len  # [N]
        else:
            longer = torch.maximum(self.chosen_last, self.rejected_last)  # [N]
        return torch.sort(longer, stable=True).indices

    def by_length(self) -> PairBatch:
        """The same pairs ordered by their longer answer (stable), so that consecutive micro-batches hold
        pairs of similar length and each can be cut to its own width (`ranking_objective`): the RM
        batches of the demo were 66% real tokens when padded to the batch's longest row, 88% this way.
        The step's gradient is the same sum over pairs."""
        return self.take(self.length_order())


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Leading tokens a and b share, leaving each at least its last token (`PairBatch.prefix_len`)."""
    n, limit = 0, min(len(a), len(b)) - 1
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def shared_prefix_rows(mb: PairBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One row per pair: chosen[:chosen_last+1] then rejected[prefix_len:rejected_last+1].

    Returns tokens [N, L] (right-padded with 0), positions [N, L] (the rejected part continues from the
    prefix, as in its own row), the attention mask [N, 1, L, L] (causal, except that rejected tokens do
    not see the chosen answer's own tokens) and the indices of the chosen and rejected last tokens [N].
    With causal attention every score read there equals the one of the answer's own row.
    """
    if mb.prefix_len is None:
        raise ValueError("shared_prefix_rows: the PairBatch has no prefix_len")
    device = mb.chosen.device
    prefix = mb.prefix_len.long().to(device)  # [N]
    c_end = mb.chosen_last.long().to(device) + 1  # [N] chosen row length
    r_len = mb.rejected_last.long().to(device) + 1 - prefix  # [N] rejected tokens after the prefix
    width = int((c_end + r_len).max()) if len(mb) else 1
    tokens = torch.zeros((len(mb), width), dtype=mb.chosen.dtype, device=device)
    positions = torch.zeros_like(tokens)
    for i in range(len(mb)):
        c, p, r = int(c_end[i]), int(prefix[i]), int(r_len[i])
        tokens[i, :c] = mb.chosen[i, :c]
        tokens[i, c:c + r] = mb.rejected[i, p:p + r]
        positions[i, :c] = torch.arange(c)
        positions[i, c:c + r] = torch.arange(p, p + r)
    q = torch.arange(width, device=device)[None, :, None]  # query index
    k = torch.arange(width, device=device)[None, None, :]  # key index
    in_rejected = q >= c_end[:, None, None]
    chosen_own = (k >= prefix[:, None, None]) & (k < c_end[:, None, None])
    mask = (k <= q) & ~(in_rejected & chosen_own)  # [N, L, L]
    return tokens, positions, mask[:, None], c_end - 1, c_end + r_len - 1


@dataclass(frozen=True)
class PPOBatch(_Rows):
    """One PPO mini-batch of rollouts (LLAMA2_SPEC.md section 8); per-token fields align with tokens[:, 1:]."""

    tokens: torch.Tensor  # [B, T] long, prompt + response (+ right padding)
    response_mask: torch.Tensor  # [B, T-1] float, 1 where target tokens[:, t+1] is a generated token
    old_logprobs: torch.Tensor  # [B, T-1] log-probs of the targets under the policy that sampled them
    ref_logprobs: torch.Tensor  # [B, T-1] log-probs under the frozen reference pi_0
    advantages: torch.Tensor  # [B, T-1]
    returns: torch.Tensor  # [B, T-1] value targets
    old_values: torch.Tensor  # [B, T-1] critic values when the rollout was scored

    def __post_init__(self) -> None:
        _check_int_2d("PPOBatch", "tokens", self.tokens)
        B, T = self.tokens.shape
        if T < 2:
            raise ValueError(f"PPOBatch.tokens: need at least 2 positions, got shape {(B, T)}")
        for name in ("response_mask", "old_logprobs", "ref_logprobs", "advantages", "returns", "old_values"):
            _check_shape("PPOBatch", name, getattr(self, name), (B, T - 1))

    def token_batch(self) -> TokenBatch:
        """The sequences as a TokenBatch (loss_mask[:, 1:] = response_mask) for logprobs/values calls."""
        mask = torch.zeros(self.tokens.shape, dtype=torch.float32)  # [B, T]
        mask[:, 1:] = self.response_mask
        return TokenBatch(tokens=self.tokens, loss_mask=mask)


@dataclass(frozen=True)
class Sample:
    """One generated answer (a generator's output row)."""

    prompt_index: int  # index of the prompt in the list given to generate()
    sample_index: int  # 0..K-1 among the K samples of that prompt
    token_ids: list[int]  # response tokens only; ends with EOS (id 2) when finish_reason == "stop"
    logprobs: list[float]  # [len(token_ids)] log pi(token) under the served weights (no temperature)
    finish_reason: str  # "stop" (EOS) | "length" (max_tokens or max_model_len)
    weight_version: int  # learner weight version the engine was serving


def pad_sequences(seqs: list[list[int]], pad_id: int, side: str = "right") -> torch.Tensor:
    """Ragged token lists -> LongTensor [B, max_len], padded with pad_id on `side` (right | left)."""
    if side not in ("right", "left"):
        raise ValueError(f"pad_sequences: side must be 'right' or 'left', got {side!r}")
    if not seqs:
        raise ValueError("pad_sequences: got no sequences")
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # [B, T]
    for row, s in enumerate(seqs):
        if len(s) == 0:
            continue
        values = torch.as_tensor(s, dtype=torch.long)
        if side == "right":
            out[row, : len(s)] = values
        else:
            out[row, width - len(s) :] = values
    return out
