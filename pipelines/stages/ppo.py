"""Stage 5: PPO from the rejection-sampling checkpoint (LLAMA2_SPEC.md s.8).

Reward: R = R~c - beta * KL(pi || pi_0), with Rc = Rs if IS_SAFETY or Rs < 0.15 else Rh and
R~c = WHITEN(LOGIT(Rc)) over each iteration's rollouts; the sequence reward sits on the last answer
token, the KL penalty on every answer token. A critic (value model initialised from the helpfulness
RM) gives GAE advantages. Each mini-batch is one gradient step (clip 0.2); constant LR. Every
`eval_every` iterations the mean reward on held-out prompts decides early stopping, and the best
policy so far is the stage's output.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from typing import Any

import ray
import torch

from actors.batch import PPOBatch, TokenBatch, pad_sequences
from actors.weight_sync import sync_policy_to_generators
from algorithms import gae, kl_penalized_rewards, llama2_reward, masked_mean, whiten
from pipelines.common import (complete, generator_pool, learner_group, load_tokenizer, metrics_logger,
                              prompt_fits, reference_group, reward_actor, score_requests, score_tensor,
                              selection_scores)
from pipelines.config import Config
from pipelines.data import read_table
from pipelines.rundir import RunDir, atomic_write_text

log = logging.getLogger(__name__)
HELD_OUT_PERCENT = 10


def held_out(prompt_id: str) -> bool:
    return int(hashlib.sha256(f"ppo:{prompt_id}".encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def shaped_scores(scores: dict, is_safety: torch.Tensor, whiten_scores: bool) -> torch.Tensor:
    """R~c per sample: the paper's combination when both RMs are there, else the scorer's reward."""
    if "safety" in scores and "helpfulness" in scores:
        rs = score_tensor(scores, "safety")
        rh = score_tensor(scores, "helpfulness")
        return llama2_reward(rs, rh, is_safety, whiten_scores=whiten_scores)
    r = score_tensor(scores, "reward")
    return whiten(r) if whiten_scores else r


def sequences(completions) -> tuple[torch.Tensor, torch.Tensor]:
    """prompt+response token rows [B,T] and the response mask aligned to targets [B,T-1]."""
    seqs, masks = [], []
    for c in completions:
        seqs.append(c.prompt_tokens + c.response_tokens)
        m = [0] * (len(c.prompt_tokens) - 1) + [1] * len(c.response_tokens)
        masks.append(m)
    tokens = pad_sequences(seqs, 0)                               # [B, T]
    mask = pad_sequences(masks, 0)[:, : tokens.shape[1] - 1].float()  # [B, T-1]
    return tokens, mask


def gather_sharded(group, method: str, batch: TokenBatch) -> torch.Tensor:
    return torch.cat(group.run_sharded(method, batch), dim=0)


def make_experience(cfg: Config, flat, scores, is_safety, policy, critic, reference) -> tuple[PPOBatch, dict]:
    pc = cfg.ppo
    tokens, mask = sequences(flat)
    if tokens.shape[0] % policy.world_size:
        raise ValueError(f"ppo: {tokens.shape[0]} rollouts not divisible by {policy.world_size} learner ranks")
    full_mask = torch.zeros(tokens.shape)
    full_mask[:, 1:] = mask
    tb = TokenBatch(tokens, full_mask)
    old_lp = gather_sharded(policy, "logprobs", tb)                            # [B, T-1]
    ref_lp = reference.run("logprobs", tb)[0]                                 # [B, T-1]
    values = gather_sharded(critic, "values", tb)                              # [B, T-1]
    score = shaped_scores(scores, is_safety, pc.whiten_scores)                 # [B]
    rewards, kl = kl_penalized_rewards(score, old_lp, ref_lp, mask, pc.beta, kind=pc.kl_estimator)
    adv, ret = gae(rewards, values * mask, mask, pc.gamma, pc.lam)
    adv = whiten(adv, mask)
    stats = {"score_mean": float(score.mean()), "kl": float(masked_mean(kl, mask)),
             "response_len": float(mask.sum(1).mean()), "value_mean": float(masked_mean(values, mask))}
    return PPOBatch(tokens, mask, old_lp, ref_lp, adv, ret, values * mask), stats


def update(pc, policy, critic, batch: PPOBatch, seed: int) -> dict[str, float]:
    """One gradient step per mini-batch (paper: 64 per mini-batch), for `ppo_epochs` passes."""
    agg: dict[str, list[float]] = {}
    g = torch.Generator().manual_seed(seed)
    for _ in range(pc.ppo_epochs):
        perm = torch.randperm(len(batch), generator=g)
        shuffled = PPOBatch(*(getattr(batch, f)[perm] for f in ("tokens", "response_mask", "old_logprobs",
                            "ref_logprobs", "advantages", "returns", "old_values")))
        for i in range(0, len(batch), pc.mini_batch_size):
            mb = shuffled.slice(i, min(i + pc.mini_batch_size, len(batch)))
            refs = policy.call_sharded("train_ppo", policy.shard(mb), pc.clip, pc.entropy_coef)
            refs += critic.call_sharded("train_value", critic.shard(mb), pc.value_clip)
            out = ray.get(refs)
            for k, v in {**out[0], **{f"critic/{k}": v for k, v in out[policy.world_size].items()}}.items():
                if isinstance(v, (int, float)):
                    agg.setdefault(k, []).append(float(v))
    return {k: sum(v) / len(v) for k, v in agg.items()}


def held_out_reward(pool, rm, tok, rows, pc, seed) -> float:
    """Mean RM reward of greedy answers to held-out prompts (greedy: no sampling noise in the signal)."""
    comps = complete(pool, tok, [r["messages"] for r in rows], n=1, temperature=0.0, top_p=1.0,
                     max_new_tokens=pc.max_new_tokens, max_prompt_len=pc.max_prompt_len, seed=seed)
    scores = ray.get(rm.score.remote(score_requests(rows, comps)))
    return float(selection_scores(scores).mean())


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    pc = cfg.ppo
    tok = load_tokenizer(cfg, run)
    init = run.require(run.checkpoint("rs"), "rejection_sampling")
    prompts = [p for p in read_table(run.require(run.data / "rl_prompts.parquet", "data"), "prompts")
               if p["split"] == "train" and prompt_fits(tok, p["messages"], pc.max_prompt_len)]
    train_rows = [p for p in prompts if not held_out(p["id"])]
    eval_rows = [p for p in prompts if held_out(p["id"])][: pc.held_out_prompts]
    rng = random.Random(cfg.seed)
    metrics = metrics_logger(cfg, run)
    pool = generator_pool(cfg, init)
    rm = reward_actor(cfg, run)
    reference = reference_group(cfg, init)
    policy = learner_group(cfg, "ppo_policy", init, pc.optim, cfg.resources.policy)
    critic_init = run.checkpoint("rm_helpfulness") if run.checkpoint("rm_helpfulness").exists() else init
    critic = learner_group(cfg, "ppo_critic", critic_init, pc.critic_optim, cfg.resources.critic, model_kind="scalar")
    history: list[dict[str, Any]] = []
    best = {"iteration": -1, "held_out_reward": held_out_reward(pool, rm, tok, eval_rows, pc, cfg.seed)}
    policy.run("save", str(run.checkpoint("ppo")), str(run.tokenizer))
    stale = 0
    try:
        for it in range(pc.iterations):
            rows = rng.sample(train_rows, min(pc.prompts_per_iteration, len(train_rows)))
            with metrics.timer("ppo", "generate", it):
                comps = complete(pool, tok, [r["messages"] for r in rows], n=pc.samples_per_prompt,
                                 temperature=pc.temperature, top_p=pc.top_p, max_new_tokens=pc.max_new_tokens,
                                 max_prompt_len=pc.max_prompt_len, seed=cfg.seed + it)
            flat = [c for g in comps for c in g]
            scores = ray.get(rm.score.remote(score_requests(rows, comps)))
            is_safety = torch.tensor([bool(r["is_safety"]) for r in rows for _ in range(pc.samples_per_prompt)])
            batch, exp_stats = make_experience(cfg, flat, scores, is_safety, policy, critic, reference)
            upd = update(pc, policy, critic, batch, cfg.seed + it)
            version = sync_policy_to_generators(policy, pool)
            rc = selection_scores(scores)
            stats = {**exp_stats, **upd, "reward_mean": float(rc.mean()), "weight_version": version}
            if "safety" in scores:
                stats["safety_mean"] = float(score_tensor(scores, "safety").mean())
                stats["helpfulness_mean"] = float(score_tensor(scores, "helpfulness").mean())
            metrics.scalars("ppo", stats, it)
            metrics.histogram("ppo", "reward", rc, it)
            metrics.text("ppo", "sample", f"{rows[0]['messages'][-1]['content']}\n---\n{flat[0].text}", it)
            history.append({"iteration": it, **{k: round(v, 5) for k, v in stats.items()}})
            log.info("ppo it %d reward %.3f kl %.4f", it, stats["reward_mean"], stats["kl"])
            if (it + 1) % pc.eval_every == 0 or it == pc.iterations - 1:
                h = held_out_reward(pool, rm, tok, eval_rows, pc, cfg.seed)
                metrics.scalars("ppo/held_out", {"reward": h}, it)
                history[-1]["held_out_reward"] = h
                if h > best["held_out_reward"]:
                    best = {"iteration": it, "held_out_reward": h}
                    policy.run("save", str(run.checkpoint("ppo")), str(run.tokenizer))
                    stale = 0
                else:
                    stale += 1
                    if stale >= pc.early_stop_patience:
                        log.info("ppo: early stop at iteration %d (best %s)", it, best)
                        break
    finally:
        policy.shutdown()
        critic.shutdown()
        pool.shutdown()
        ray.kill(rm)
        reference.shutdown()
        metrics.close()
    atomic_write_text(run.root / "ppo_history.json", json.dumps(history, indent=1))
    return {"best": best, "iterations_run": len(history), "history": history}
