"""pack_examples / chunk_stream: layout invariants, hand-derived first-fit packing, errors, and the
real transformer seeing a packed row exactly as it sees each example alone."""
from __future__ import annotations

import random

import pytest
import torch

import model
from pipelines.packing import PAD_ID, Example, PackedRows, chunk_stream, pack_examples


def _examples(lengths: list[int]) -> list[Example]:
    """Example k has tokens 100k+1 .. 100k+n (unique, never PAD_ID) and an alternating loss mask
    starting with 0, so every example is recognisable from its tokens and its mask is checkable."""
    out = []
    for k, n in enumerate(lengths):
        tokens = [100 * k + j + 1 for j in range(n)]
        mask = [j % 2 for j in range(n)]
        out.append(Example(tokens, mask, id=f"ex{k}"))
    return out


def _segments(p: PackedRows) -> list[list[tuple[int, list[int], list[float]]]]:
    """Per row, the (segment id, tokens, loss mask) of each non-padding segment, checking that each
    segment is one contiguous run and segment ids count 1, 2, ... from the start of the row."""
    rows = []
    for r in range(len(p)):
        seg = p.segment_ids[r].tolist()
        found = []
        pos = 0
        expected_id = 1
        while pos < len(seg) and seg[pos] != 0:
            s = seg[pos]
            assert s == expected_id, f"row {r}: segment {s} at {pos}, expected {expected_id}"
            end = pos
            while end < len(seg) and seg[end] == s:
                end += 1
            found.append((s, p.tokens[r, pos:end].tolist(), p.loss_mask[r, pos:end].tolist()))
            pos, expected_id = end, expected_id + 1
        # everything after the last segment is padding: segment 0, no loss, PAD_ID
        assert all(x == 0 for x in seg[pos:]), f"row {r}: a segment after padding: {seg}"
        assert p.tokens[r, pos:].eq(PAD_ID).all()
        assert p.loss_mask[r, pos:].eq(0).all()
        rows.append(found)
    return rows


def test_first_fit_without_shuffle_matches_hand_packing():
    # seq_len 10, lengths 6 5 4 3 2 in order: 6 -> row0 (room 4); 5 -> new row1 (room 5);
    # 4 -> row0 (room 0); 3 -> row1 (room 2); 2 -> row1 (room 0).  Rows: [0, 2], [1, 3, 4].
    exs = _examples([6, 5, 4, 3, 2])
    p = pack_examples(exs, 10, seed=None)
    assert len(p) == 2
    assert p.tokens[0].tolist() == exs[0].tokens + exs[2].tokens
    assert p.tokens[1].tolist() == exs[1].tokens + exs[3].tokens + exs[4].tokens
    assert p.segment_ids[0].tolist() == [1] * 6 + [2] * 4
    assert p.segment_ids[1].tolist() == [1] * 5 + [2] * 3 + [3] * 2
    assert p.loss_mask[0].tolist() == [0, 1, 0, 1, 0, 1] + [0, 1, 0, 1]
    assert p.tokens.dtype == torch.long and p.segment_ids.dtype == torch.long
    assert p.loss_mask.dtype == torch.float32


def test_padding_after_last_example_without_shuffle():
    # seq_len 8, lengths 3 then 7: 3 -> row0 (room 5); 7 does not fit -> row1 (room 1).
    exs = _examples([3, 7])
    p = pack_examples(exs, 8, seed=None)
    assert p.tokens.tolist() == [[1, 2, 3, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
                                 [101, 102, 103, 104, 105, 106, 107, PAD_ID]]
    assert p.segment_ids.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0]]
    assert p.loss_mask.tolist() == [[0, 1, 0, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 1, 0, 0]]


def test_example_exactly_seq_len_fills_a_row():
    exs = _examples([5])
    p = pack_examples(exs, 5)
    assert p.tokens.tolist() == [exs[0].tokens]
    assert p.segment_ids.tolist() == [[1] * 5]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_example_once_intact_and_contiguous(seed):
    rng = random.Random(123)
    lengths = [rng.randint(1, 12) for _ in range(30)]
    exs = _examples(lengths)
    seq_len = 16
    p = pack_examples(exs, seq_len, seed=seed)
    assert p.tokens.shape == p.loss_mask.shape == p.segment_ids.shape == (len(p), seq_len)
    by_first = {e.tokens[0]: e for e in exs}
    seen = []
    for row in _segments(p):
        assert sum(len(t) for _, t, _ in row) <= seq_len
        for _, tokens, mask in row:
            ex = by_first[tokens[0]]
            assert tokens == ex.tokens
            assert mask == [float(m) for m in ex.loss_mask]
            seen.append(ex.id)
    assert sorted(seen) == sorted(e.id for e in exs)  # each exactly once
    # no row overflows, so there are at least ceil(total / seq_len) rows; no loss is added or lost
    assert len(p) >= -(-sum(lengths) // seq_len)
    assert p.loss_mask.sum().item() == sum(sum(e.loss_mask) for e in exs)


def test_first_fit_never_leaves_room_for_a_later_opened_rows_first_example():
    # First-fit property: the example that opened row r did not fit in any earlier row at that time;
    # rows only fill up, so its length exceeds each earlier row's final free room.
    rng = random.Random(5)
    exs = _examples([rng.randint(1, 9) for _ in range(25)])
    p = pack_examples(exs, 12, seed=3)
    free = (p.segment_ids == 0).sum(dim=1).tolist()
    for r in range(1, len(p)):
        opener = int((p.segment_ids[r] == 1).sum())
        assert all(opener > free[q] for q in range(r)), (r, opener, free[:r])


def test_deterministic_for_a_seed_and_shuffled_across_seeds():
    exs = _examples([3, 4, 5, 6, 7, 2, 1, 8, 3, 5])
    a, b = pack_examples(exs, 12, seed=4), pack_examples(exs, 12, seed=4)
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.loss_mask, b.loss_mask)
    assert torch.equal(a.segment_ids, b.segment_ids)
    others = [pack_examples(exs, 12, seed=s).tokens for s in range(5, 10)]
    assert any(o.shape != a.tokens.shape or not torch.equal(o, a.tokens) for o in others)


def test_select_and_len():
    p = pack_examples(_examples([6, 5, 4, 3, 2]), 10, seed=None)
    q = p.select([1])
    assert len(q) == 1
    assert q.tokens.tolist() == [p.tokens[1].tolist()]
    assert q.segment_ids.tolist() == [p.segment_ids[1].tolist()]
    assert q.loss_mask.tolist() == [p.loss_mask[1].tolist()]


def test_too_long_example_is_an_error_naming_it():
    exs = _examples([3, 9, 2])
    with pytest.raises(ValueError, match=r"example ex1 has 9 tokens, longer than seq_len=8"):
        pack_examples(exs, 8)


def test_too_long_example_without_id_is_named_by_index():
    exs = [Example([1, 2], [0, 1]), Example([1, 2, 3, 4], [0, 0, 1, 1])]
    with pytest.raises(ValueError, match=r"example 1 has 4 tokens"):
        pack_examples(exs, 3, seed=None)


def test_loss_mask_length_mismatch_is_an_error():
    exs = [Example([5, 6, 7], [0, 1], id="bad")]
    with pytest.raises(ValueError, match=r"example bad: 3 tokens but 2 loss-mask entries"):
        pack_examples(exs, 8)


def test_empty_list_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        pack_examples([], 8)


@pytest.mark.parametrize("seq_len", [1, 0, -3])
def test_seq_len_below_two_is_an_error(seq_len):
    with pytest.raises(ValueError, match=f"seq_len must be >= 2, got {seq_len}"):
        pack_examples(_examples([1]), seq_len)


@pytest.fixture
def one_thread():
    """A tiny model on a shared 2-core machine runs far faster on one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_packed_row_equals_separate_examples_in_the_real_model(one_thread):
    torch.manual_seed(0)
    args = model.ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=64, multiple_of=16, max_seq_len=64)
    net = model.Transformer(args).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so a leak across examples would be visible
        for prm in net.parameters():
            if prm.dim() > 1:
                prm.normal_(0.0, 0.3)
    g = torch.Generator().manual_seed(1)
    exs = [Example(torch.randint(1, 64, (n,), generator=g).tolist(), [1] * n, id=f"e{k}")
           for k, n in enumerate([5, 7, 6])]
    p = pack_examples(exs, 24, seed=0)
    assert len(p) == 1  # 18 tokens fit one row of 24
    with torch.no_grad():
        packed = net(p.tokens, segment_ids=p.segment_ids)[0]  # [24, 64]
        plain = net(p.tokens)[0]                               # same row, attention across examples
        leaked = False
        for s in (1, 2, 3):
            cols = (p.segment_ids[0] == s).nonzero().flatten()
            toks = p.tokens[0, cols]
            assert toks.tolist() in [e.tokens for e in exs]
            alone = net(toks[None])[0]  # [n, 64]
            err = (packed[cols] - alone).abs().max().item()  # (torch.testing imports ~2 s of modules)
            assert err <= 1e-5, f"segment {s}: packed logits differ from the example alone by {err}"
            if cols[0] > 0:
                leaked |= not torch.allclose(plain[cols], alone, atol=1e-3)
    # control: without segment ids the later examples do see the earlier ones (the check can fail)
    assert leaked


def test_chunk_stream_cuts_full_rows_and_drops_the_tail():
    p = chunk_stream(list(range(1, 11)), 4)  # 10 tokens -> rows [1..4], [5..8]; 9, 10 dropped
    assert p.tokens.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert p.loss_mask.tolist() == [[1.0] * 4] * 2 and p.loss_mask.dtype == torch.float32
    assert p.segment_ids.tolist() == [[1] * 4] * 2 and p.segment_ids.dtype == torch.long
    assert p.tokens.dtype == torch.long


def test_chunk_stream_exactly_one_row():
    assert chunk_stream([7, 8, 9], 3).tokens.tolist() == [[7, 8, 9]]


def test_chunk_stream_shorter_than_one_row_is_an_error():
    with pytest.raises(ValueError, match="token stream of 3 tokens is shorter than one row of 4"):
        chunk_stream([1, 2, 3], 4)
