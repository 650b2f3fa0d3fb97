"""Stage 3: helpfulness and safety reward models (LLAMA2_SPEC.md s.5-6, paper eq. 2, Table 8).

Each RM starts from the SFT model with a scalar head and is trained for one epoch with the margin
ranking loss on its data mix (helpfulness: all helpfulness pairs + an equal share of safety pairs;
safety: safety pairs + 10% helpfulness pairs); the safety RM adds the auxiliary safe/unsafe loss.
Accuracy is reported per rating level and per safety bin on held-out pairs.
"""
from __future__ import annotations

import hashlib
import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import ray
import torch

from actors.batch import PairBatch, common_prefix_len, pad_sequences
from algorithms import RATINGS, margin_for
from model.chat import encode_dialog
from model.tokenizer import Tokenizer
from pipelines import model_pairs
from pipelines.common import generator_pool, learner_group, load_tokenizer, metrics_logger
from pipelines.config import Config
from pipelines.data import read_table, write_table
from pipelines.rundir import RunDir

log = logging.getLogger(__name__)
SAFE_BY_LABEL = {"chosen_safe_rejected_unsafe": (True, False), "both_safe": (True, True),
                 "both_unsafe": (False, False), None: (True, True)}


def is_held_out(pair_id: str, percent: int) -> bool:
    """Whether a pair is kept for evaluation: its id hashes into the lowest `percent` of 100 buckets.

    Stable across runs and sets: raising `percent` only moves pairs from training to evaluation.
    """
    return int(hashlib.sha256(pair_id.encode()).hexdigest(), 16) % 100 < percent


def answer_tokens(tok: Tokenizer, prompt: list[dict], answer: str) -> list[int]:
    """prompt + answer in the chat format; the RM reads its scalar at the final EOS."""
    return encode_dialog(tok, [*prompt, {"role": "assistant", "content": answer}], train_on="none").tokens


def pair_batch(tok: Tokenizer, pairs: Sequence[dict], margin_table: str, with_safety: bool,
               shared_prefix: bool = False) -> PairBatch:
    """Tokenised pairs; `shared_prefix` marks the tokens both answers start with (their prompt at least)
    so that training runs each pair as one row (`actors.batch.shared_prefix_rows`)."""
    chosen = [answer_tokens(tok, p["prompt"], p["chosen"]) for p in pairs]
    rejected = [answer_tokens(tok, p["prompt"], p["rejected"]) for p in pairs]
    rating = torch.tensor([RATINGS.index(p["rating"]) for p in pairs], dtype=torch.long)  # [N]
    safe = [SAFE_BY_LABEL[p["safety_label"]] for p in pairs]
    return PairBatch(
        chosen=pad_sequences(chosen, 0), chosen_last=torch.tensor([len(c) - 1 for c in chosen]),
        rejected=pad_sequences(rejected, 0), rejected_last=torch.tensor([len(r) - 1 for r in rejected]),
        margin=margin_for(rating, margin_table), rating=rating,
        chosen_safe=torch.tensor([s[0] for s in safe]) if with_safety else None,
        rejected_safe=torch.tensor([s[1] for s in safe]) if with_safety else None,
        prefix_len=torch.tensor([common_prefix_len(c, r) for c, r in zip(chosen, rejected)]) if shared_prefix else None,
    )


def data_mix(primary: list[dict], other: list[dict], n_other: int, rng: random.Random) -> list[dict]:
    """All primary pairs plus `n_other` sampled from the other set (LLAMA2_SPEC.md s.6)."""
    extra = rng.sample(other, min(n_other, len(other)))
    mix = primary + extra
    rng.shuffle(mix)
    return mix


def score_pairs(group, tok: Tokenizer, pairs: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw RM scalars for chosen and rejected answers (rank 0 of the learner group), each pair as one
    shared-prefix row."""
    if not pairs:
        return torch.zeros(0), torch.zeros(0)
    batch = pair_batch(tok, pairs, "small", with_safety=False, shared_prefix=True)
    return ray.get(group.rank0.score_pairs.remote(batch))


def _flipped(pair: dict) -> bool | None:
    """Whether the simulated annotator reversed the oracle's preference (None: not recorded)."""
    flipped = model_pairs.meta_value(pair, "flipped")
    return None if flipped is None else bool(flipped)


def accuracy_report(pairs: Sequence[dict], rc: torch.Tensor, rr: torch.Tensor) -> dict[str, Any]:
    """Accuracy overall, per rating level (paper Table 8) and per safety bin; ties count 0.5.

    Accuracy is against the pairs' labels, as the paper's is against its annotators'. Where the rows
    record whether the simulated annotator flipped the oracle's preference, `vs_oracle` gives the same
    per rating level against the oracle, which separates the RM's skill from the annotators' noise.
    """
    win = (rc > rr).float() + 0.5 * (rc == rr).float()
    groups: dict[str, list[float]] = defaultdict(list)
    oracle: dict[str, list[float]] = defaultdict(list)
    for p, w in zip(pairs, win.tolist()):
        groups[f"rating/{p['rating']}"].append(w)
        if p["safety_label"] is not None:
            groups[f"safety_bin/{p['safety_label']}"].append(w)
        flipped = _flipped(p)
        if flipped is not None:
            oracle[f"rating/{p['rating']}"].append(1.0 - w if flipped else w)
    out: dict[str, Any] = {"accuracy": float(win.mean()), "n": len(pairs)}
    for key, ws in sorted(groups.items()):
        out[key] = {"accuracy": sum(ws) / len(ws), "n": len(ws)}
    if oracle and sum(map(len, oracle.values())) == len(pairs):
        flat = [w for ws in oracle.values() for w in ws]
        out["vs_oracle"] = {"accuracy": sum(flat) / len(flat), "n": len(flat),
                            **{k: {"accuracy": sum(ws) / len(ws), "n": len(ws)} for k, ws in sorted(oracle.items())}}
    return out


def train_one(cfg: Config, run: RunDir, tok: Tokenizer, name: str, train: list[dict], held_out: list[dict],
              with_safety: bool, metrics) -> dict[str, Any]:
    rc_cfg = cfg.reward_models
    group = learner_group(cfg, name, run.checkpoint("sft"), rc_cfg.optim, cfg.resources.reward_model,
                          model_kind="scalar")
    try:
        per_epoch = max(1, len(train) // rc_cfg.batch_size)  # a last partial batch is dropped
        steps = max(1, round(per_epoch * rc_cfg.epochs))  # fractional epochs end part-way through a pass
        group.run("set_total_steps", steps)
        order = list(train)
        rng = random.Random(cfg.seed)
        for step in range(steps):
            if step and step % per_epoch == 0:
                rng.shuffle(order)  # a new order for each further epoch (the paper trains one)
            i = (step % per_epoch) * rc_cfg.batch_size
            batch = pair_batch(tok, order[i:i + rc_cfg.batch_size], rc_cfg.margin, with_safety, rc_cfg.shared_prefix)
            stats = group.run_sharded("train_ranking", batch, rc_cfg.aux_weight if with_safety else 0.0)[0]
            metrics.scalars(f"reward_models/{name}", stats, step)
        rc, rr = score_pairs(group, tok, held_out)
        report = accuracy_report(held_out, rc, rr)
        origins = [model_pairs.origin(p) for p in held_out]
        if "model" in origins:  # the policy's own answers vs the ladder's, reported apart as well
            for o in ("ladder", "model"):
                idx = [i for i, x in enumerate(origins) if x == o]
                if idx:
                    report[f"{o}_pairs"] = accuracy_report([held_out[i] for i in idx], rc[idx], rr[idx])
        metrics.scalars(f"reward_models/{name}/eval", {k: v["accuracy"] for k, v in report.items()
                                                           if isinstance(v, dict)} | {"accuracy": report["accuracy"]}, steps)
        group.run("save", str(run.checkpoint(name)), str(run.tokenizer))
    finally:
        group.shutdown()
    log.info("%s: held-out accuracy %.3f on %d pairs", name, report["accuracy"], report["n"])
    return {"train_pairs": len(train), "steps": steps, "held_out": report}


def collect_model_pairs(cfg: Config, run: RunDir, tok: Tokenizer, tables: dict[str, tuple[Path, list[dict]]]
                        ) -> tuple[dict[str, tuple[list[dict], list[dict]]], dict[str, Any]]:
    """Pairs of the SFT policy's own answers per kind, labelled by the oracle (pipelines.model_pairs).

    Source prompts are drawn from each kind's pair table; the pairs are written to
    data/rm_model_pairs.parquet before any RM trains. -> ({kind: (train, held_out)}, report)
    """
    mp = cfg.reward_models.model_pairs
    rng = random.Random(cfg.seed + 17)
    sources = {}
    for kind in mp.kinds:  # validate every source table before starting the generators
        path, rows = tables[kind]
        found = model_pairs.source_prompts(rows, path)
        sources[kind] = rng.sample(found, min(mp.prompts, len(found)))
    pool = generator_pool(cfg, run.checkpoint("sft"), seed_offset=17)
    out, report = {}, {}
    try:
        for n, kind in enumerate(mp.kinds):
            train, held_out, report[kind] = model_pairs.collect(
                pool, tok, sources[kind], kind=kind, samples=mp.samples, temperatures=list(mp.temperatures),
                max_new_tokens=mp.max_new_tokens, max_prompt_len=mp.max_prompt_len,
                annotator_noise=cfg.data.world.annotator_noise, seed=cfg.seed + 1000 * (n + 1),
                is_held_out=lambda pair_id: is_held_out(pair_id, cfg.reward_models.held_out_percent))
            out[kind] = (train, held_out)
    finally:
        pool.shutdown()
    rows = [r for train, held_out in out.values() for r in train + held_out]
    if rows:
        write_table(rows, run.data / "rm_model_pairs.parquet", "preferences")
    return out, report


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    rc_cfg = cfg.reward_models
    tok = load_tokenizer(cfg, run)
    run.require(run.checkpoint("sft"), "sft")
    h_path = run.require(run.data / "helpfulness_pairs.parquet", "data")
    s_path = run.require(run.data / "safety_pairs.parquet", "data")
    helpful = read_table(h_path, "preferences")
    safety = read_table(s_path, "preferences")
    held = lambda row: is_held_out(row["id"], rc_cfg.held_out_percent)
    split = lambda rows: ([r for r in rows if not held(r)], [r for r in rows if held(r)])
    h_train, h_eval = split(helpful)
    s_train, s_eval = split(safety)
    collected: dict[str, Any] = {}
    if rc_cfg.model_pairs.prompts > 0:
        by_kind, collected = collect_model_pairs(cfg, run, tok, {"helpfulness": (h_path, helpful),
                                                                 "safety": (s_path, safety)})
        for kind, (train, held_out) in by_kind.items():
            (h_train if kind == "helpfulness" else s_train).extend(train)
            (h_eval if kind == "helpfulness" else s_eval).extend(held_out)
    rng = random.Random(cfg.seed)
    h_mix = data_mix(h_train, s_train, int(rc_cfg.helpful_safety_mix * len(h_train)), rng)
    frac = rc_cfg.safety_helpful_fraction
    s_mix = data_mix(s_train, h_train, int(round(frac / (1 - frac) * len(s_train))), rng)
    metrics = metrics_logger(cfg, run)
    try:
        out: dict[str, Any] = {
            "rm_helpfulness": train_one(cfg, run, tok, "rm_helpfulness", h_mix, h_eval, False, metrics),
            "rm_safety": train_one(cfg, run, tok, "rm_safety", s_mix, s_eval, True, metrics),
        }
    finally:
        metrics.close()
    if collected:
        out["model_pairs"] = collected
    return out
