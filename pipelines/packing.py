"""Packing tokenised examples into fixed-length rows (LLAMA2_SPEC.md section 4).

Examples are concatenated to fill rows of `seq_len` tokens; each example gets its own segment id so
attention never crosses examples (the transformer masks across segments and restarts positions).
Padding at the end of a row has segment id 0 and no loss.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

PAD_ID = 0  # <unk>; padded positions carry no loss and attend only to padding


@dataclass(frozen=True)
class Example:
    """One tokenised training example: tokens and the 0/1 loss mask of each token as a target."""

    tokens: list[int]
    loss_mask: list[int]
    id: str = ""


@dataclass(frozen=True)
class PackedRows:
    tokens: torch.Tensor       # [N, L] long
    loss_mask: torch.Tensor    # [N, L] float, 1 where the token at t is a trainable target
    segment_ids: torch.Tensor  # [N, L] long, 0 = padding, 1.. = example within the row

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def select(self, idx: Sequence[int]) -> "PackedRows":
        index = torch.as_tensor(list(idx), dtype=torch.long)
        return PackedRows(self.tokens[index], self.loss_mask[index], self.segment_ids[index])


def pack_examples(examples: Sequence[Example], seq_len: int, *, seed: int | None = 0) -> PackedRows:
    """Pack examples into rows of `seq_len` (first-fit in a seeded shuffled order).

    An example longer than `seq_len` is an error naming it: truncating would silently drop answers.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    if not examples:
        raise ValueError("nothing to pack: the example list is empty")
    order = list(range(len(examples)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    rows: list[list[int]] = []   # example indices per row
    room: list[int] = []
    for i in order:
        ex = examples[i]
        n = len(ex.tokens)
        if n != len(ex.loss_mask):
            raise ValueError(f"example {ex.id or i}: {n} tokens but {len(ex.loss_mask)} loss-mask entries")
        if n == 0:
            raise ValueError(f"example {ex.id or i} is empty: nothing to train on")
        if n > seq_len:
            raise ValueError(
                f"example {ex.id or i} has {n} tokens, longer than seq_len={seq_len}; raise the stage's "
                f"seq_len (<= model max_seq_len) or drop the example from the data")
        for r, free in enumerate(room):
            if free >= n:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(seq_len - n)
    tokens = torch.full((len(rows), seq_len), PAD_ID, dtype=torch.long)  # [N, L]
    mask = torch.zeros((len(rows), seq_len), dtype=torch.float32)        # [N, L]
    seg = torch.zeros((len(rows), seq_len), dtype=torch.long)            # [N, L]
    for r, members in enumerate(rows):
        pos = 0
        for s, i in enumerate(members, start=1):
            ex = examples[i]
            n = len(ex.tokens)
            tokens[r, pos:pos + n] = torch.tensor(ex.tokens, dtype=torch.long)
            mask[r, pos:pos + n] = torch.tensor(ex.loss_mask, dtype=torch.float32)
            seg[r, pos:pos + n] = s
            pos += n
    return PackedRows(tokens, mask, seg)


def chunk_stream(token_stream: Sequence[int], seq_len: int) -> PackedRows:
    """Cut one long token stream (pretraining documents joined with BOS/EOS) into full rows.

    Pretraining uses plain causal attention over the stream, as Llama 2 does; every token is a target.
    """
    n = len(token_stream) // seq_len
    if n == 0:
        raise ValueError(f"token stream of {len(token_stream)} tokens is shorter than one row of {seq_len}")
    t = torch.tensor(token_stream[: n * seq_len], dtype=torch.long).view(n, seq_len)  # [N, L]
    return PackedRows(t, torch.ones_like(t, dtype=torch.float32), torch.ones_like(t))
