"""Stage 8: evaluate checkpoints on held-out prompts with the world's oracle (LLAMA2_SPEC.md s.11).

Per checkpoint: oracle helpfulness per family (greedy answers), the violation rate on adversarial
prompts, the false-refusal rate on borderline prompts, system-constraint adherence by turn number in
multi-turn dialogues, and the RM-judged win rate against the baseline (`win/(win+loss)`, ties removed).
One generator pool serves every checkpoint: each is loaded into it in place (the weight-sync path).
Every metric comes with its standard error. Because every checkpoint answers the same prompts (greedy),
the stage also reports each change between checkpoints as a paired difference over prompts with the
standard error of that difference (`paired`); the report uses it as the noise of a change. It measures
the prompt-sampling noise of comparing two fixed models, not the variation between training runs.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import ray

from pipelines.common import complete, generator_pool, load_into_pool, load_tokenizer, metrics_logger, prompt_fits, reward_actor, score_requests, selection_scores
from pipelines.config import Config
from pipelines.data import read_table, write_table
from pipelines.rundir import RunDir
from pipelines.world.oracle import judge, judge_dialogue

log = logging.getLogger(__name__)
CANDIDATES = ("sft", "rs", "ppo", "gatt", "context_distillation")


RM_SAFETY = "rm_safety_adversarial"  # mean safety RM score (sigmoid) of the answers to adversarial prompts


def mean_se(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n)); the report's noise estimate."""
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return m, math.sqrt(var / n)


def stat(xs: Sequence[float]) -> dict[str, float]:
    m, se = mean_se(xs)
    return {"mean": round(m, 4), "se": round(se, 4), "n": len(xs)}


def single_turn(pool, tok, rows, ec, seed) -> list:
    """One completion group (of one answer) per prompt row."""
    return complete(pool, tok, [r["messages"] for r in rows], n=1, temperature=ec.temperature, top_p=1.0,
                    max_new_tokens=ec.max_new_tokens, max_prompt_len=ec.max_prompt_len, seed=seed)


def multi_turn(pool, tok, dialogs, ec, seed) -> list[list[str]]:
    """Answer each user turn with the model's own previous answers in context."""
    n_turns = max(ec.turns)
    answers: list[list[str]] = [[] for _ in dialogs]
    for t in range(n_turns):
        live = [i for i, d in enumerate(dialogs) if len(d["users"]) > t]
        prompts = []
        for i in live:
            d = dialogs[i]
            msgs = [{"role": "system", "content": d["system"]}] if d["system"] else []
            for u, a in zip(d["users"][:t], answers[i]):
                msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
            msgs.append({"role": "user", "content": d["users"][t]})
            prompts.append(msgs)
        keep = [prompt_fits(tok, m, ec.max_prompt_len) for m in prompts]
        fits = [i for i, ok in zip(live, keep) if ok]
        fit_prompts = [m for m, ok in zip(prompts, keep) if ok]
        if not fit_prompts:
            break
        comps = single_turn(pool, tok, [{"messages": m} for m in fit_prompts], ec, seed + t)
        for i, group in zip(fits, comps):
            answers[i].append(group[0].text)
    return answers


def dialog_rows(rows: list[dict]) -> list[dict]:
    """Eval dialogues (system constraints + user turns) from the dialogue rows of the bundle."""
    out = []
    for r in rows:
        msgs = r["messages"]
        system = msgs[0]["content"] if msgs[0]["role"] == "system" else ""
        out.append({"id": r["id"], "system": system, "users": [m["content"] for m in msgs if m["role"] == "user"],
                    "meta": r["meta"]})
    return out


def oracle_metrics(rows, answers, dialogs, dialog_answers, turns) -> tuple[dict[str, Any], list[dict]]:
    per: dict[str, list[float]] = defaultdict(list)
    results = []
    for row, ans in zip(rows, answers):
        j = judge(row, ans)
        kind = row["kind"]
        if kind == "helpful":
            per["helpfulness"].append(j.helpfulness)
            per[f"helpfulness/{row['task']}"].append(j.helpfulness)
            per["accuracy"].append(float(j.correct))
        elif kind == "adversarial":
            per["violation_rate"].append(float(j.violation))
            per[f"violation_rate/{row['task']}"].append(float(j.violation))
            per["adversarial_refusal_rate"].append(float(j.refusal))
        else:
            per["false_refusal_rate"].append(float(j.refusal))
            per["borderline_helpfulness"].append(j.helpfulness)
        results.append({"prompt_id": row["id"], "kind": kind, "task": row["task"], "turn": 1, "answer": ans,
                        "helpfulness": j.helpfulness, "refusal": j.refusal, "violation": j.violation,
                        "adherence": j.adherent})
    for d, ans in zip(dialogs, dialog_answers):
        meta = json.loads(d["meta"])
        meta["turns"] = meta["turns"][: len(ans)]
        for t, j in enumerate(judge_dialogue(meta, ans), start=1):
            if t in turns and j.adherent is not None:
                per[f"adherence/turn{t}"].append(float(j.adherent))
            results.append({"prompt_id": d["id"], "kind": "multi_turn", "task": "constraints", "turn": t,
                            "answer": ans[t - 1], "helpfulness": j.helpfulness, "refusal": j.refusal,
                            "violation": j.violation, "adherence": j.adherent})
    return {k: stat(v) for k, v in sorted(per.items())}, results


def per_prompt(results: Sequence[dict], turns: set[int]) -> dict[str, dict[tuple, float]]:
    """metric -> {(prompt id, turn): value} from one checkpoint's result rows (oracle_metrics)."""
    out: dict[str, dict[tuple, float]] = defaultdict(dict)
    for r in results:
        key = (r["prompt_id"], r["turn"])
        if r["kind"] == "helpful":
            out["helpfulness"][key] = r["helpfulness"]
        elif r["kind"] == "adversarial":
            out["violation_rate"][key] = float(r["violation"])
        elif r["kind"] == "borderline":
            out["false_refusal_rate"][key] = float(r["refusal"])
        elif r["turn"] in turns and r["adherence"] is not None:
            out[f"adherence/turn{r['turn']}"][key] = float(r["adherence"])
    return out


def paired(a: dict[str, dict[tuple, float]], b: dict[str, dict[tuple, float]]) -> dict[str, dict[str, float]]:
    """Per metric: mean of (a - b) over the prompts both answered, and the standard error of that mean."""
    out = {}
    for metric in sorted(set(a) & set(b)):
        keys = sorted(set(a[metric]) & set(b[metric]))
        if keys:
            out[metric] = stat([a[metric][k] - b[metric][k] for k in keys])
    return out


def comparisons(names: Sequence[str], base: str) -> list[tuple[str, str]]:
    """(later, earlier) checkpoint pairs: each against the one before it and against `base`."""
    pairs = [(b, a) for a, b in zip(names, names[1:])]
    return pairs + [(n, base) for n in names if base in names and n != base and (n, base) not in pairs]


def rm_scores(rm, rows, comps_by_name: dict[str, list]) -> dict[str, dict[str, np.ndarray]]:
    """The reward role's scores of each checkpoint's answers ({name: {score kind: [one per row]}};
    `selection_scores` gives the one the method optimises).

    Each distinct (prompt, answer) is scored once: later checkpoints repeat many answers of earlier
    ones (59% of run 30's 5150 answers were repeats), and one score per answer also makes two equal
    answers an exact tie. Called after all generation: scoring while the generators answer for the
    next checkpoint made the evaluate stage slower on 2 cores (182 s against 168 s in run 24)."""
    index: dict[tuple, int] = {}
    unique, where = [], {}
    for name, comps in comps_by_name.items():
        at = []
        for req in score_requests(rows, comps):
            key = (tuple(req.prompt_tokens), tuple(req.response_tokens), req.is_safety)
            if key not in index:
                index[key] = len(unique)
                unique.append(req)
            at.append(index[key])
        where[name] = np.asarray(at, dtype=np.int64)
    scores = ray.get(rm.score.remote(unique))
    return {name: {kind: np.asarray(v)[at] for kind, v in scores.items()} for name, at in where.items()}


def win_rate(sa, sb) -> dict[str, float]:
    """RM-judged win rate of answers A over baseline answers B (their scores): win / (win + loss), ties removed."""
    win, loss = int((sa > sb).sum()), int((sa < sb).sum())
    p = win / (win + loss) if win + loss else float("nan")
    se = math.sqrt(p * (1 - p) / (win + loss)) if win + loss else float("nan")
    return {"mean": round(p, 4), "se": round(se, 4), "n": win + loss, "ties": len(sa) - win - loss}


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    ec = cfg.evaluate
    tok = load_tokenizer(cfg, run)
    names = [n for n in (ec.checkpoints or CANDIDATES) if Path(n).exists() or run.checkpoint(n).exists()]
    if not names:
        raise FileNotFoundError(f"evaluate: none of the checkpoints {list(ec.checkpoints or CANDIDATES)} exists under "
                                f"{run.root / 'checkpoints'}")
    prompts = [p for p in read_table(run.require(run.data / "eval_prompts.parquet", "data"), "prompts")
               if prompt_fits(tok, p["messages"], ec.max_prompt_len)]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for p in prompts:
        by_kind[p["kind"]].append(p)
    rows = [p for k in sorted(by_kind) for p in by_kind[k][: ec.prompts_per_kind]]
    dialogs = dialog_rows(read_table(run.require(run.data / "eval_dialogues.parquet", "data"), "dialogues"))
    dialogs = dialogs[: ec.dialogues]
    paths = {n: Path(n) if Path(n).exists() else run.checkpoint(n) for n in names}
    metrics = metrics_logger(cfg, run)
    pool = generator_pool(cfg, paths[names[0]])
    rm = reward_actor(cfg, run) if ec.rm_win_rate else None
    report: dict[str, Any] = {}
    base = ec.rm_win_rate_against
    comps_by_name: dict[str, list] = {}
    values: dict[str, dict[str, dict[tuple, float]]] = {}
    try:
        for v, name in enumerate(names):
            if v:
                load_into_pool(pool, paths[name], 10_000 + v)
            t0 = time.perf_counter()
            comps = single_turn(pool, tok, rows, ec, cfg.seed)
            answers = [g[0].text for g in comps]
            t1 = time.perf_counter()
            dialog_answers = multi_turn(pool, tok, dialogs, ec, cfg.seed)
            log.info("eval %s: %d prompts %.1fs, %d dialogues %.1fs", name, len(rows), t1 - t0, len(dialogs),
                     time.perf_counter() - t1)
            comps_by_name[name] = comps
            m, results = oracle_metrics(rows, answers, dialogs, dialog_answers, set(ec.turns))
            values[name] = per_prompt(results, set(ec.turns))
            for r in results:
                r.update({"checkpoint": str(paths[name]), "stage": name})
            write_table(results, run.eval_results(Path(name).name), "eval_results")
            report[name] = m
            metrics.scalars(f"evaluate/{Path(name).name}", {k: s["mean"] for k, s in m.items()}, 0)
            log.info("eval %s: %s", name, {k: s["mean"] for k, s in m.items() if "/" not in k})
        if rm is not None and base in comps_by_name:
            t0 = time.perf_counter()
            scores = rm_scores(rm, rows, {name: comps_by_name[name] for name in names})
            for name in names:
                if name != base:
                    report[name]["rm_win_rate_vs_" + base] = win_rate(selection_scores(scores[name]),
                                                                      selection_scores(scores[base]))
            # The paper's measure of context distillation (section 4.2.4, Figure 16): the safety RM's
            # score of the answers to adversarial prompts; it still moves when violations are at zero.
            adversarial = [i for i, r in enumerate(rows) if r["kind"] == "adversarial"]
            if adversarial and "safety" in scores[base]:
                for name in names:
                    safety = [float(scores[name]["safety"][i]) for i in adversarial]
                    report[name][RM_SAFETY] = stat(safety)
                    values[name][RM_SAFETY] = {(rows[i]["id"], 1): v for i, v in zip(adversarial, safety)}
            log.info("RM scores against %s: %.1fs", base, time.perf_counter() - t0)
    finally:
        pool.shutdown()
        if rm is not None:
            ray.kill(rm)
        metrics.close()
    diffs = {f"{a}-{b}": paired(values[a], values[b]) for a, b in comparisons(names, ec.rm_win_rate_against)}
    return {"checkpoints": report, "paired": diffs, "prompts": len(rows), "dialogues": len(dialogs)}
