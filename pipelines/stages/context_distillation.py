"""Stage 7: safety context distillation (LLAMA2_SPEC.md s.10).

Adversarial prompts only (the adversarial RL prompts, then the adversarial prompts of the safety
preference data, each request once): generate an answer (the best of `samples` by the safety RM; the
paper generates one) with a safety preprompt (generic, the default, or the risk
category's preprompt with its answer template, which the GAtt model answered with greetings and
unrelated sentences in session 10) and one without; keep the preprompted answer only
where the safety RM scores it above the answer generated without it (by more than `min_gain`: two
refusals differ by the RM's noise, and distilling those only moves an already safe model); fine-tune
on the kept answers with the preprompt removed.
"""
from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

import ray
import torch

from model import load_pretrained, save_pretrained

from pipelines.common import (complete, generator_pool, learner_group, load_tokenizer, metrics_logger,
                              prompt_fits, reward_actor, score_requests, score_tensor, sft_on_dialogs)
from pipelines.config import Config
from pipelines.data import read_table, write_table
from pipelines.rundir import RunDir

log = logging.getLogger(__name__)
GENERIC_PREPROMPT = "You are a safe and responsible assistant."


def preprompt(row: dict, kind: str) -> str:
    """The generic preprompt, or the category's preprompt with its answer template (paper Table 39)."""
    if kind == "generic":
        return GENERIC_PREPROMPT
    if kind != "template":
        raise ValueError(f"context_distillation.preprompt must be 'generic' or 'template', got {kind!r}")
    key = json.loads(row["meta"])["turns"][-1]
    return (f"{GENERIC_PREPROMPT} The request may be about {row['task']} activity. "
            f"Refuse it with an answer like: \"{key['canonical']}\"")


def with_preprompt(messages: list[dict], text: str, position: str = "system") -> list[dict]:
    """The prompt with the safety preprompt as (or in front of) its system prompt, or in front of its
    last user turn (`position` "user", the paper's "prefixing a safety preprompt" to the prompt)."""
    if position == "user":
        *head, last = messages
        return [*head, {**last, "content": f"{text} {last['content']}"}]
    if position != "system":
        raise ValueError(f"context_distillation.preprompt_position must be 'system' or 'user', got {position!r}")
    if messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{text} {messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def adversarial_prompts(run: RunDir) -> list[dict]:
    """Prompt rows of every distinct adversarial request: RL prompts (train split), then safety pairs."""
    rl = [p for p in read_table(run.require(run.data / "rl_prompts.parquet", "data"), "prompts")
          if p["split"] == "train" and p["kind"] == "adversarial"]
    pairs = read_table(run.require(run.data / "safety_pairs.parquet", "data"), "preferences")
    from_pairs = [{"id": p["id"], "messages": p["prompt"], "kind": "adversarial", "task": p["task"],
                   "is_safety": True, "meta": p["meta"], "split": "train"} for p in pairs if p["is_safety"]]
    seen, out = set(), []
    for row in rl + from_pairs:
        text = json.dumps(row["messages"], sort_keys=True)
        if text not in seen:
            seen.add(text)
            out.append(row)
    return out


def safety_scores(rm, rows, comps) -> torch.Tensor:
    scores = ray.get(rm.score.remote(score_requests(rows, comps)))
    if "safety" not in scores:
        raise ValueError("context_distillation needs a scorer that returns a safety score (reward=llama2)")
    return score_tensor(scores, "safety")


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    cc = cfg.context_distillation
    tok = load_tokenizer(cfg, run)
    init = run.require(run.checkpoint("gatt"), "gatt")
    rows = adversarial_prompts(run)
    random.Random(cfg.seed).shuffle(rows)
    plain = []
    for r in rows:
        pre = with_preprompt(r["messages"], preprompt(r, cc.preprompt), cc.preprompt_position)
        if prompt_fits(tok, pre, cc.max_prompt_len):
            plain.append((r, pre))
        if len(plain) == cc.prompts:
            break
    rows = [r for r, _ in plain]
    metrics = metrics_logger(cfg, run)
    t0 = time.perf_counter()
    pool = generator_pool(cfg, init)
    rm = reward_actor(cfg, run)
    try:
        kw = dict(temperature=cc.temperature, top_p=1.0, max_new_tokens=cc.max_new_tokens,
                  max_prompt_len=cc.max_prompt_len, seed=cfg.seed)
        t1 = time.perf_counter()
        with_pre = complete(pool, tok, [p for _, p in plain], n=cc.samples, **kw)
        without = complete(pool, tok, [r["messages"] for r in rows], n=1, **kw)
        t2 = time.perf_counter()
        # scored as answers to the prompt WITHOUT the preprompt; the best of the samples per prompt
        s_all = safety_scores(rm, rows, with_pre).view(len(rows), cc.samples)  # [P, n], prompt-major
        s_raw = safety_scores(rm, rows, without)  # [P]
        log.info("context_distillation: actors ready %.1fs, %d answers generated %.1fs, scored %.1fs",
                 t1 - t0, len(rows) * (cc.samples + 1), t2 - t1, time.perf_counter() - t2)
    finally:
        pool.shutdown()
        ray.kill(rm)
    s_pre, best = s_all.max(dim=1)  # [P], [P]
    keep = (s_pre > s_raw + cc.min_gain).tolist()
    picked = [g[i].text for g, i in zip(with_pre, best.tolist())]
    train = [(f"{r['id']}-cd", [*r["messages"], {"role": "assistant", "content": text}])
             for r, text, k in zip(rows, picked, keep) if k and text.strip()]
    write_table([{"id": i, "messages": m, "source": "context_distillation", "meta": "{}"} for i, m in train],
                run.data / "context_distillation_train.parquet", "dialogues")
    stats = {"prompts": len(rows), "kept": len(train), "safety_with_preprompt": float(s_pre.mean()),
             "safety_without": float(s_raw.mean())}
    metrics.scalars("context_distillation", stats, 0)
    if not train:
        # Nothing to distil is an outcome, not an error: the stage's model is the one it started from.
        log.warning("context_distillation: the safety RM preferred no preprompted answer; the output is %s unchanged",
                    init)
        save_pretrained(load_pretrained(init), run.checkpoint("context_distillation"), tokenizer=tok)
        metrics.close()
        return {**stats, "unchanged": True}
    group = learner_group(cfg, "context_distillation", init, cc.optim, cfg.resources.policy)
    try:
        stats.update(sft_on_dialogs(group, tok, train, train_on="last", seq_len=cc.seq_len, epochs=cc.epochs,
                                    batch_size=cc.batch_size, stage="context_distillation", metrics=metrics,
                                    seed=cfg.seed))
        group.run("save", str(run.checkpoint("context_distillation")), str(run.tokenizer))
    finally:
        group.shutdown()
        metrics.close()
    return stats
