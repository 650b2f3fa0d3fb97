"""Stage 4: rejection-sampling fine-tuning (LLAMA2_SPEC.md s.7).

Each round samples K answers per prompt from the newest policy on the vLLM generator pool, scores
them with the reward actor (the combined Llama 2 reward), keeps the best per prompt and fine-tunes on
the pool of best answers of all rounds so far (the paper kept earlier rounds' samples from its 4th
iteration on, after regressions). The policy learner stays alive across rounds, so each round starts
from the newest policy (the base of that round); after each round the generators load its weights.
Each round logs the max-reward-vs-K curve and the reward at several probe temperatures.
"""
from __future__ import annotations

import logging
import random
from typing import Any

import ray

from actors.weight_sync import sync_policy_to_generators
from algorithms import best_of_k, max_reward_curve
from pipelines.common import (complete, generator_pool, learner_group, load_tokenizer, metrics_logger,
                              prompt_fits, reward_actor, score_requests, selection_scores, sft_on_dialogs)
from pipelines.config import Config
from pipelines.data import read_table, write_table
from pipelines.rundir import RunDir

log = logging.getLogger(__name__)


def round_temperature(temperatures: list[float], r: int) -> float:
    return temperatures[r] if len(temperatures) > 1 else temperatures[0]


def sample_and_score(pool, rm, tok, rows, *, k, temperature, rc, seed):
    completions = complete(pool, tok, [r["messages"] for r in rows], n=k, temperature=temperature, top_p=1.0,
                           max_new_tokens=rc.max_new_tokens, max_prompt_len=rc.max_prompt_len, seed=seed)
    scores = ray.get(rm.score.remote(score_requests(rows, completions)))
    return completions, scores, selection_scores(scores).view(len(rows), k)  # [N, K]


def probe_temperatures(pool, rm, tok, rows, rc, metrics, r: int, seed: int) -> dict[str, float]:
    """Mean and best-of-K reward at each probe temperature, so a user can re-tune the schedule."""
    out = {}
    for t in rc.probe_temperatures:
        _, _, s = sample_and_score(pool, rm, tok, rows, k=rc.k, temperature=t, rc=rc, seed=seed)
        out[f"T{t:g}/mean"] = float(s.mean())
        out[f"T{t:g}/max_of_k"] = float(s.max(dim=1).values.mean())
    metrics.scalars("rejection_sampling/temperature_probe", out, r)
    return out


def rollout_rows(rows, completions, scores, temperature, r) -> list[dict]:
    out, flat = [], 0
    selected = selection_scores(scores)
    for row, group in zip(rows, completions):
        for c in group:
            out.append({"prompt_id": row["id"], "sample_index": c.sample_index, "prompt_tokens": c.prompt_tokens,
                        "response_tokens": c.response_tokens, "response_logprobs": c.response_logprobs,
                        "response_text": c.text, "weight_version": c.weight_version, "temperature": temperature,
                        "reward": float(selected[flat]),
                        "helpfulness_score": float(scores["helpfulness"][flat]) if "helpfulness" in scores else None,
                        "safety_score": float(scores["safety"][flat]) if "safety" in scores else None,
                        "stage": "rejection_sampling", "iteration": r})
            flat += 1
    return out


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    rc = cfg.rejection_sampling
    tok = load_tokenizer(cfg, run)
    base = run.require(run.checkpoint("sft"), "sft")
    prompts = [p for p in read_table(run.require(run.data / "rl_prompts.parquet", "data"), "prompts")
               if p["split"] == "train" and p["kind"] in rc.prompt_kinds
               and prompt_fits(tok, p["messages"], rc.max_prompt_len)]
    if not prompts:
        raise ValueError(f"rejection_sampling: {run.data / 'rl_prompts.parquet'} has no train prompt of the kinds "
                         f"{list(rc.prompt_kinds)} that fits max_prompt_len={rc.max_prompt_len}")
    rng = random.Random(cfg.seed)
    probe_rows = rng.sample(prompts, min(rc.probe_prompts, len(prompts)))
    metrics = metrics_logger(cfg, run)
    pool = generator_pool(cfg, base)
    rm = reward_actor(cfg, run)
    policy = learner_group(cfg, "rs_policy", base, rc.optim, cfg.resources.policy)
    best_pool: list[tuple[str, list[dict]]] = []
    report: dict[str, Any] = {"rounds": []}
    try:
        for r in range(rc.rounds):
            temperature = round_temperature(list(rc.temperatures), r)
            rows = rng.sample(prompts, min(rc.prompts_per_round, len(prompts)))
            # 1. sample K per prompt from the newest policy, score with the reward actor
            completions, scores, s = sample_and_score(pool, rm, tok, rows, k=rc.k, temperature=temperature,
                                                      rc=rc, seed=cfg.seed + 1000 * r)
            write_table(rollout_rows(rows, completions, scores, temperature, r),
                        run.data / f"rs_round{r}_rollouts.parquet", "rollouts")
            # 2. keep the best answer per prompt (ties: lowest index)
            best = best_of_k(s.flatten(), rc.k)  # [N] flat indices
            new = []
            for i, row in enumerate(rows):
                c = completions[i][int(best[i]) % rc.k]
                if not c.text.strip():
                    continue  # the best answer is empty: nothing to learn from this prompt
                new.append((f"{row['id']}-rs{r}", [*row["messages"], {"role": "assistant", "content": c.text}]))
            best_pool = (best_pool + new) if rc.keep_all_rounds else new
            curve = max_reward_curve(s)  # [K] expected max reward over k samples
            probe = probe_temperatures(pool, rm, tok, probe_rows, rc, metrics, r, seed=cfg.seed + 77 + r)
            for kk, v in enumerate(curve.tolist(), start=1):
                metrics.scalars(f"rejection_sampling/round{r}/max_reward_vs_k", {"max_reward": v}, kk)
            metrics.scalars("rejection_sampling", {"reward_mean": float(s.mean()),
                                                   "best_reward_mean": float(s.max(1).values.mean())}, r)
            # 3. fine-tune on the pool of best answers, then the generators serve the new policy
            stats = sft_on_dialogs(policy, tok, best_pool, train_on="last", seq_len=cfg.sft.seq_len,
                                   epochs=rc.epochs, batch_size=rc.batch_size, stage=f"rejection_sampling/round{r}",
                                   metrics=metrics, seed=cfg.seed + r)
            version = sync_policy_to_generators(policy, pool)
            policy.run("save", str(run.checkpoint(f"rs_round{r}")), str(run.tokenizer))
            report["rounds"].append({"round": r, "temperature": temperature, "prompts": len(rows),
                                     "reward_mean": float(s.mean()), "best_reward_mean": float(s.max(1).values.mean()),
                                     "max_reward_vs_k": [round(v, 4) for v in curve.tolist()],
                                     "temperature_probe": probe, "pool_size": len(best_pool),
                                     "weight_version": version, "train": stats})
            log.info("RS round %d: T=%.2f reward %.3f -> best-of-%d %.3f, pool %d", r, temperature, float(s.mean()),
                     rc.k, float(s.max(1).values.mean()), len(best_pool))
        policy.run("save", str(run.checkpoint("rs")), str(run.tokenizer))
    finally:
        policy.shutdown()
        pool.shutdown()
        ray.kill(rm)
        metrics.close()
    return report
