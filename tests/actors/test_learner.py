"""Learner ranks on gloo must equal one process on the whole batch; LR schedule; save/resume.

The single-process references below apply algorithms/ directly to the whole batch with one AdamW
step (same parameter groups, actors.schedule.build_optimizer), so they check the learner's
micro-batching, DDP averaging and global-token normalisation rather than repeat its code.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import ray
import torch

from actors.batch import PairBatch, PPOBatch, TokenBatch, common_prefix_len, pad_sequences, shared_prefix_rows
from actors.config import LearnerConfig, OptimConfig, ResourceConfig
from actors.group import ActorGroup, RankContext
from actors.learner import Learner, load_model
from actors.reference import Reference
from actors.schedule import build_optimizer, lr_factor
from algorithms import (
    entropy_from_logits,
    masked_mean,
    ppo_policy_loss,
    ranking_loss,
    safety_aux_loss,
    sft_loss,
    shifted_token_logprobs,
    value_loss,
)
from model import ModelArgs, Transformer, hf_state_dict, load_pretrained, save_pretrained
from model.precision import bf16_autocast_fast

ARGS = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=128, multiple_of=32, max_seq_len=128)
OPTIM = OptimConfig(lr=1e-3, schedule="constant", weight_decay=0.1, grad_clip=1.0)
LOCAL = RankContext(0, 1, "", 0, None, 1, "local")  # an in-process learner, no process group
B, T = 8, 24
ATOL = 2e-6


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "lm"
    save_pretrained(Transformer(ARGS), path)
    return str(path)


def _cfg(path: str, kind: str = "lm") -> LearnerConfig:
    # micro_batch_size 2 with 4 rows per rank: two micro-batches, i.e. gradient accumulation too.
    return LearnerConfig(init_path=path, model_kind=kind, micro_batch_size=2, optim=OPTIM,
                         resources=ResourceConfig(num_workers=2, num_cpus=0.25))


def _group(path: str, kind: str, name: str) -> ActorGroup:
    cfg = _cfg(path, kind)
    return ActorGroup(Learner, cfg.resources, init_args=(cfg,), name=name)


@pytest.fixture(scope="module")
def policy(ray_cluster, lm_path):
    group = _group(lm_path, "lm", "policy")
    yield group
    group.shutdown()


def _sft_batch(seed: int) -> TokenBatch:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, ARGS.vocab_size, (B, T), generator=g)
    mask = torch.zeros(B, T)
    for row, start in enumerate([4, 10, 20, 7, 15, 2]):  # unequal answer lengths per row
        mask[row, start:] = 1
    # rows 6, 7 train nothing: rank 1's second micro-batch is empty and must still run backward
    return TokenBatch(tokens=tokens, loss_mask=mask)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One plain AdamW step; returns the gradient norm before clipping (sensitive to loss scaling,
    which Adam's update itself mostly hides)."""
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIM.grad_clip)
    opt.step()
    opt.zero_grad()
    return float(norm)


def _assert_same_weights(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == got.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=ATOL, rtol=0, msg=k)


def _ppo_batch(model: Transformer, tokens: torch.Tensor) -> PPOBatch:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        logp = shifted_token_logprobs(model(tokens), tokens)  # [B, T-1]
    mask = torch.zeros(B, T - 1)
    for row in range(B):
        mask[row, 5 + row :] = 1
    noise = lambda: torch.randn(B, T - 1, generator=g)  # noqa: E731
    old = logp + 0.3 * noise()  # ratios away from 1, so clipping is active on some tokens
    return PPOBatch(tokens, mask, old, logp + 0.1 * noise(), noise(), noise(), noise())


def test_policy_steps_two_ranks_equal_one_process(policy, lm_path):
    ref = load_pretrained(lm_path)
    opt = build_optimizer(ref, OPTIM)
    sft = _sft_batch(1)
    stats = policy.run_sharded("train_sft", sft)
    norm = _step(ref, opt, sft_loss(ref(sft.tokens), sft.tokens, sft.loss_mask))
    assert stats[0]["grad_norm"] == pytest.approx(norm, rel=1e-5) and stats[0]["grad_norm"] > OPTIM.grad_clip
    rank_weights = policy.run("hf_weights")
    _assert_same_weights(hf_state_dict(ref), rank_weights[0])
    _assert_same_weights(rank_weights[0], rank_weights[1])  # DDP replicas stay identical
    assert stats[0]["units"] == float((sft.loss_mask[:, 1:] != 0).sum())

    ppo = _ppo_batch(ref, sft.tokens)
    clip, ent_coef = 0.2, 0.01
    stats = policy.run_sharded("train_ppo", ppo, clip, ent_coef)
    logits = ref(ppo.tokens)
    loss, st = ppo_policy_loss(shifted_token_logprobs(logits, ppo.tokens), ppo.old_logprobs, ppo.advantages,
                               ppo.response_mask, clip)
    entropy = masked_mean(entropy_from_logits(logits[:, :-1]), ppo.response_mask)
    norm = _step(ref, opt, loss - ent_coef * entropy)
    assert stats[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)
    _assert_same_weights(hf_state_dict(ref), policy.run("hf_weights")[0])
    assert stats[0]["clip_frac"] == pytest.approx(float(st["clip_frac"]), abs=1e-6) and stats[0]["clip_frac"] > 0
    assert stats[0]["entropy"] == pytest.approx(float(entropy.detach()), abs=1e-5)
    assert policy.run("weight_version") == [2, 2]

    logprobs = torch.cat(policy.run_sharded("logprobs", sft))  # [B, T-1]
    with torch.no_grad():
        torch.testing.assert_close(logprobs, shifted_token_logprobs(ref(sft.tokens), sft.tokens), atol=1e-5, rtol=0)


def _pair_batch() -> PairBatch:
    g = torch.Generator().manual_seed(5)
    chosen = torch.randint(3, ARGS.vocab_size, (B, 20), generator=g)
    rejected = torch.randint(3, ARGS.vocab_size, (B, 14), generator=g)  # a different padded width
    return PairBatch(
        chosen=chosen, chosen_last=torch.randint(5, 20, (B,), generator=g),
        rejected=rejected, rejected_last=torch.randint(5, 14, (B,), generator=g),
        margin=torch.tensor([1.0, 2 / 3, 1 / 3, 0.0] * 2), rating=torch.arange(B) % 4,
        chosen_safe=torch.tensor([True] * 6 + [False] * 2), rejected_safe=torch.tensor([False, True] * 4),
    )


def test_pairs_by_length_and_ranking_width_cut_leave_the_loss_unchanged():
    from actors.objectives import ranking_objective
    from model import ScalarModel

    torch.manual_seed(3)
    model = ScalarModel(ARGS)
    torch.nn.init.normal_(model.score.weight, std=0.5)  # a non-zero head: the scores differ per pair
    pairs = _pair_batch()
    ordered = pairs.by_length()
    longer = torch.maximum(ordered.chosen_last, ordered.rejected_last)
    assert longer.tolist() == sorted(longer.tolist())
    # each pair keeps its own rows and labels: find every original pair in the reordered batch
    key = lambda b, i: (b.chosen[i].tolist(), int(b.chosen_last[i]), b.rejected[i].tolist(), float(b.margin[i]),
                        int(b.rating[i]), bool(b.chosen_safe[i]))
    assert sorted(key(pairs, i) for i in range(B)) == sorted(key(ordered, i) for i in range(B))
    # a batch padded far wider than its answers: the cut width gives the full-width scores
    wide = PairBatch(torch.nn.functional.pad(pairs.chosen, (0, 30), value=7), pairs.chosen_last,
                     torch.nn.functional.pad(pairs.rejected, (0, 36), value=7), pairs.rejected_last, pairs.margin,
                     pairs.rating, pairs.chosen_safe, pairs.rejected_safe)
    with torch.no_grad():
        r_c = model(wide.chosen)[torch.arange(B), pairs.chosen_last]
        r_r = model(wide.rejected)[torch.arange(B), pairs.rejected_last]
        expected = ranking_loss(r_c, r_r, pairs.margin)
        for batch in (wide, ordered, pairs):
            got = ranking_objective(model, batch, aux_weight=0.0)
            assert float(got.loss) == pytest.approx(float(expected), rel=1e-5)


def _prefix_pairs() -> PairBatch:
    """Pairs whose answers share a prompt of 3-9 tokens (rows padded to different widths)."""
    g = torch.Generator().manual_seed(9)
    chosen, rejected, prefix = [], [], []
    for i in range(B):
        p = torch.randint(3, ARGS.vocab_size, (3 + i % 7,), generator=g).tolist()
        c = p + torch.randint(3, ARGS.vocab_size, (1 + (5 * i) % 9,), generator=g).tolist()
        r = p + torch.randint(3, ARGS.vocab_size, (1 + (3 * i) % 11,), generator=g).tolist()
        chosen.append(c), rejected.append(r), prefix.append(common_prefix_len(c, r))
    return PairBatch(
        chosen=pad_sequences(chosen, 0), chosen_last=torch.tensor([len(c) - 1 for c in chosen]),
        rejected=pad_sequences(rejected, 0), rejected_last=torch.tensor([len(r) - 1 for r in rejected]),
        margin=torch.tensor([1.0, 2 / 3, 1 / 3, 0.0] * 2), rating=torch.arange(B) % 4,
        chosen_safe=torch.tensor([True] * 6 + [False] * 2), rejected_safe=torch.tensor([False, True] * 4),
        prefix_len=torch.tensor(prefix),
    )


def test_shared_prefix_rows_give_each_answers_own_scores_and_gradients():
    from actors.objectives import ranking_objective
    from model import ScalarModel

    pairs = _prefix_pairs()
    assert all(int(p) >= 3 for p in pairs.prefix_len)  # the prompt at least (longer where answers start alike)
    separate = dataclasses.replace(pairs, prefix_len=None)  # a row per answer
    grads = []
    for batch in (separate, pairs, pairs.by_length()):
        torch.manual_seed(3)
        model = ScalarModel(ARGS)
        torch.nn.init.normal_(model.score.weight, std=0.5)
        out = ranking_objective(model, batch, aux_weight=0.5)
        out.loss.backward()
        grads.append((float(out.loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters()])))
    for loss, grad in grads[1:]:
        assert loss == pytest.approx(grads[0][0], rel=1e-5)
        torch.testing.assert_close(grad, grads[0][1], atol=1e-6, rtol=1e-4)
    tokens, positions, mask, last_c, last_r = shared_prefix_rows(pairs)
    i = 1
    c_len, p_len = int(pairs.chosen_last[i]) + 1, int(pairs.prefix_len[i])
    assert tokens[i, last_r[i]] == pairs.rejected[i, pairs.rejected_last[i]]
    assert positions[i, c_len] == p_len  # the rejected answer continues right after the prompt
    assert not mask[i, 0, c_len, p_len:c_len].any() and mask[i, 0, c_len, :p_len].all()


def test_pair_batch_rejects_a_prefix_the_rows_do_not_share():
    pairs = _prefix_pairs()
    fields = {f: getattr(pairs, f) for f in ("chosen", "chosen_last", "rejected", "rejected_last", "margin")}
    wrong = pairs.prefix_len.clone()
    wrong[2] += 1  # one token into the answers, which differ there
    assert pairs.chosen[2, int(wrong[2]) - 1] != pairs.rejected[2, int(wrong[2]) - 1]  # the answers differ there
    with pytest.raises(ValueError, match=r"rows \[2\] say their chosen and rejected tokens share a prefix"):
        PairBatch(**fields, prefix_len=wrong)
    with pytest.raises(ValueError, match=r"prefix_len: rows \[0\] are outside"):
        PairBatch(**fields, prefix_len=torch.tensor([99] + pairs.prefix_len[1:].tolist()))


def test_reward_and_value_steps_two_ranks_equal_one_process(ray_cluster, lm_path):
    critic = _group(lm_path, "scalar", "critic")
    try:
        ref = load_model(lm_path, "scalar", torch.float32)
        opt = build_optimizer(ref, OPTIM)
        pairs, aux = _pair_batch(), 0.5
        stats = critic.run_sharded("train_ranking", pairs, aux)
        r_c = ref(pairs.chosen)[torch.arange(B), pairs.chosen_last]
        r_r = ref(pairs.rejected)[torch.arange(B), pairs.rejected_last]
        safe = torch.cat([pairs.chosen_safe, pairs.rejected_safe])
        loss = ranking_loss(r_c, r_r, pairs.margin) + aux * safety_aux_loss(torch.cat([r_c, r_r]), safe)
        norm = _step(ref, opt, loss)
        assert stats[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)
        _assert_same_weights(hf_state_dict(ref), critic.run("hf_weights")[0])
        assert stats[0]["accuracy"] == 0.5  # zero score head: every pair is a tie before the step
        assert set(stats[0]) >= {"accuracy/significantly_better", "accuracy/negligibly_better", "safety_aux_loss"}

        ppo = _ppo_batch(Transformer(ARGS), torch.randint(3, ARGS.vocab_size, (B, T)))
        stats = critic.run_sharded("train_value", ppo, 0.2)
        values = ref(ppo.tokens)[:, :-1]
        loss, _ = value_loss(values, ppo.old_values, ppo.returns, ppo.response_mask, 0.2)
        norm = _step(ref, opt, loss)
        assert stats[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)
        _assert_same_weights(hf_state_dict(ref), critic.run("hf_weights")[0])
        assert stats[0]["loss"] == pytest.approx(float(loss.detach()), abs=1e-5)

        got = torch.cat(ray.get([a.score.remote(c.chosen, c.chosen_last)
                                 for a, c in zip(critic.actors, critic.shard(pairs))]))
        with torch.no_grad():
            expected = ref(pairs.chosen)[torch.arange(B), pairs.chosen_last]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

        # score_pairs: each answer's own score, in the batch's order, as shared-prefix rows or as a row each
        prefix = _prefix_pairs()
        assert not torch.equal(prefix.length_order(), torch.arange(B))  # the actor reorders, then restores
        with torch.no_grad():
            want_c = torch.stack([ref(prefix.chosen[i:i + 1])[0, prefix.chosen_last[i]] for i in range(B)])
            want_r = torch.stack([ref(prefix.rejected[i:i + 1])[0, prefix.rejected_last[i]] for i in range(B)])
        assert torch.cat([want_c, want_r]).unique().numel() == 2 * B  # the head was trained: scores differ
        for batch in (prefix, dataclasses.replace(prefix, prefix_len=None)):
            sc, sr = ray.get(critic.rank0.score_pairs.remote(batch))
            torch.testing.assert_close(sc, want_c, atol=1e-5, rtol=0)
            torch.testing.assert_close(sr, want_r, atol=1e-5, rtol=0)
    finally:
        critic.shutdown()


def test_unequal_shards_raise_on_every_rank_instead_of_hanging(policy):
    batch = _sft_batch(2)
    with pytest.raises(ValueError, match="ranks got unequal shards"):
        ray.get(policy.call_sharded("train_sft", [batch.slice(0, 2), batch.slice(2, 8)]))


def test_save_then_resume_continues_identically(policy, tmp_path):
    path = str(tmp_path / "saved")
    policy.run("save", path)
    saved = load_pretrained(path)
    _assert_same_weights(policy.run("hf_weights")[0], hf_state_dict(saved))
    resumed = Learner(LearnerConfig(init_path=path, micro_batch_size=8, optim=OPTIM), LOCAL)
    counters = resumed.load_train_state(path)
    assert counters["step"] == resumed.weight_version() == policy.run("weight_version")[0]
    batch = _sft_batch(4)
    policy.run_sharded("train_sft", batch)
    resumed.train_sft(batch)  # Adam moments restored: the same update as the group's
    _assert_same_weights(policy.run("hf_weights")[0], resumed.hf_weights())


def test_scalar_model_from_lm_checkpoint_has_lm_trunk_and_zero_head(lm_path):
    lm = load_pretrained(lm_path)
    scalar = load_model(lm_path, "scalar", torch.float32)
    assert torch.count_nonzero(scalar.score.weight) == 0
    trunk = {k: v for k, v in lm.state_dict().items() if k != "output.weight"}
    for k, v in trunk.items():
        assert torch.equal(scalar.state_dict()[k], v), k
    save_pretrained(scalar, lm_path + "-scalar")
    with pytest.raises(ValueError, match="model_kind 'lm' needs a language model"):
        load_model(lm_path + "-scalar", "lm", torch.float32)


def test_reference_logprobs_match_forward_and_is_frozen(lm_path):
    cfg = LearnerConfig(init_path=lm_path, micro_batch_size=3)
    ref = Reference(cfg, LOCAL)
    batch = _sft_batch(6)
    model = load_pretrained(lm_path)
    with torch.no_grad():
        expected = shifted_token_logprobs(model(batch.tokens), batch.tokens)
    torch.testing.assert_close(ref.logprobs(batch), expected, atol=1e-6, rtol=0)
    assert not any(p.requires_grad for p in ref.model.parameters())
    with pytest.raises(ValueError, match="score needs model_kind 'scalar'"):
        ref.score(batch.tokens, torch.zeros(B, dtype=torch.long))


def test_misuse_is_a_clear_error(lm_path):
    with pytest.raises(NotImplementedError, match="fsdp"):
        Learner(LearnerConfig(init_path=lm_path, parallel="fsdp"), LOCAL)
    learner = Learner(LearnerConfig(init_path=lm_path, optim=OptimConfig(schedule="cosine")), LOCAL)
    with pytest.raises(ValueError, match="call set_total_steps"):
        learner.train_sft(_sft_batch(1))
    with pytest.raises(ValueError, match="train_value needs model_kind 'scalar'"):
        learner.train_value(_ppo_batch(Transformer(ARGS), _sft_batch(1).tokens), 0.2)
    empty = TokenBatch(tokens=torch.ones(2, 4, dtype=torch.long), loss_mask=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="no trainable unit"):
        learner.train_sft(empty)


def test_lr_schedule_warmup_then_cosine_to_min_ratio():
    # RM recipe (section 6): warmup 3% of steps with a minimum of 5; cosine down to 10%.
    cfg = OptimConfig(lr=1.0, schedule="cosine", warmup_steps=5, warmup_ratio=0.03, min_lr_ratio=0.1)
    assert [lr_factor(s, 100, cfg) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lr_factor(5, 100, cfg) == pytest.approx(1.0)
    # step 52 is 47 of the 95 decay steps
    assert lr_factor(52, 100, cfg) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 47 / 95)))
    assert lr_factor(100, 100, cfg) == pytest.approx(0.1)
    assert [lr_factor(s, 1000, cfg) for s in (0, 29)] == pytest.approx([1 / 30, 1.0])  # 3% of 1000 > 5
    constant = OptimConfig(schedule="constant", warmup_steps=2)
    assert [lr_factor(s, None, constant) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


def test_autocast_auto_is_resolved_on_the_learners_device(lm_path):
    fast = bf16_autocast_fast("cpu")
    auto = Learner(LearnerConfig(init_path=lm_path, autocast_bf16="auto"), LOCAL)
    assert auto.autocast_bf16 is fast and auto.precision() == ("bf16 autocast" if fast else "float32")
    assert Learner(LearnerConfig(init_path=lm_path, autocast_bf16=True), LOCAL).precision() == "bf16 autocast"
    assert Reference(LearnerConfig(init_path=lm_path, autocast_bf16="auto"), LOCAL).autocast_bf16 is fast
    with pytest.raises(ValueError, match="learner autocast_bf16: expected true, false or 'auto', got 'maybe'"):
        Learner(LearnerConfig(init_path=lm_path, autocast_bf16="maybe"), LOCAL)
