"""Preference pairs of the policy's own answers, labelled by the world's oracle (LLAMA2_SPEC.md s.5).

Meta's annotators compared two answers sampled from the newest model variants at different
temperatures, so each weekly batch of preference data came from the distribution the next reward
model would have to judge (paper section 3.2.2). The world's quality ladders (pipelines.world.pairs)
are hand-made answers instead; an RM trained on them alone learns what separates the rungs (refusals,
padding, formats) and ranks the policy's own answers by correctness at chance (docs/results.md).

`collect` does what the annotators did, with the oracle as annotator: for each source prompt it
samples `samples` answers from the policy (split evenly over `temperatures`), picks at random one pair
of distinct answers whose oracle scores differ, and lets `pipelines.world.pairs.annotate` judge it
(rating level from the score gap, the simulated annotator's noise, the safety label). A prompt whose
samples all score the same gives no pair and is counted. Held-out membership follows the source
pair's, so a prompt never trains one RM pair and tests another.
"""
from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from pipelines.common import complete, prompt_fits
from pipelines.world.oracle import judge_turn, parse_meta
from pipelines.world.pairs import PairStats, annotate, pair_score

log = logging.getLogger(__name__)
_EPS = 1e-9


def source_prompts(rows: Sequence[dict], path: object) -> list[dict]:
    """One row per distinct prompt of a preferences table, with its answer key; errors name the row."""
    seen: set[str] = set()
    out = []
    for i, row in enumerate(rows):
        if len(row["prompt"]) != 1 or row["prompt"][0]["role"] != "user":
            continue  # multi-turn pairs: the oracle keys judge the last turn, and the ladder has none
        try:
            meta = parse_meta(row["meta"])
        except ValueError as exc:
            raise ValueError(
                f"{path} row {i} (id {row.get('id')!r}): reward_models.model_pairs needs the oracle's answer key "
                f"in 'meta' to label the policy's answers ({exc}); set reward_models.model_pairs.prompts=0 for "
                "pairs without one") from None
        text = row["prompt"][0]["content"]
        if text in seen:
            continue
        seen.add(text)
        out.append({"id": row["id"], "prompt": row["prompt"], "key": meta["turns"][-1]})
    return out


def pick_pair(answers: Sequence[str], key: dict, rng: random.Random) -> tuple[int, int] | None:
    """A random pair of distinct non-empty answers whose oracle scores differ, or None.

    Empty answers are left out: a preference row needs two texts (the preferences schema).
    """
    scores = [pair_score(judge_turn(key, a)) for a in answers]
    ok = [i for i, a in enumerate(answers) if a.strip()]
    candidates = [(i, j) for i in ok for j in ok
                  if i < j and abs(scores[i] - scores[j]) > _EPS and answers[i].strip() != answers[j].strip()]
    return rng.choice(candidates) if candidates else None


def collect(pool, tok, sources: Sequence[dict], *, kind: str, samples: int, temperatures: Sequence[float],
            max_new_tokens: int, max_prompt_len: int, annotator_noise: float, seed: int,
            is_held_out: Callable[[str], bool]) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(train rows, held-out rows, stats): one annotated pair per source prompt whose samples differ.

    Rows have every preferences column; ids are the source pair's id + "-model", and the meta records
    the source, the two answers' temperatures and sample indices.
    """
    if samples < 2:
        raise ValueError(f"reward_models.model_pairs.samples: need at least 2 answers per prompt, got {samples}")
    fits = [s for s in sources if prompt_fits(tok, s["prompt"], max_prompt_len)]
    per_t = [samples // len(temperatures) + (i < samples % len(temperatures)) for i in range(len(temperatures))]
    answers: list[list[tuple[str, float]]] = [[] for _ in fits]
    for t_index, (temperature, n) in enumerate(zip(temperatures, per_t)):
        if n == 0:
            continue
        groups = complete(pool, tok, [s["prompt"] for s in fits], n=n, temperature=temperature, top_p=1.0,
                          max_new_tokens=max_new_tokens, max_prompt_len=max_prompt_len, seed=seed + 101 * t_index)
        for i, group in enumerate(groups):
            answers[i] += [(c.text, temperature) for c in group]
    rng = random.Random(seed)
    stats = PairStats()
    no_pair = 0
    train, held_out = [], []
    temps: Counter = Counter()
    for source, drawn in zip(fits, answers):
        texts = [a for a, _ in drawn]
        pick = pick_pair(texts, source["key"], rng)
        if pick is None:
            no_pair += 1
            continue
        i, j = pick
        row = annotate(source["key"], source["prompt"][0]["content"], (texts[i], texts[j]), kind, rng,
                       annotator_noise, stats,
                       extra_meta={"source_id": source["id"], "origin": "model",
                                   "temperatures": [drawn[i][1], drawn[j][1]], "sample_indices": [i, j]})
        if row is None:
            continue  # a safety pair whose chosen answer is unsafe and rejected safe: dropped (counted)
        stats.made += 1
        temps[f"{drawn[i][1]:g}/{drawn[j][1]:g}"] += 1
        row = {"id": f"{source['id']}-model", **row}
        (held_out if is_held_out(source["id"]) else train).append(row)
    report = {"kind": kind, "prompts": len(sources), "prompts_too_long": len(sources) - len(fits),
              "samples": samples, "temperatures": list(temperatures), "no_differing_pair": no_pair,
              "train": len(train), "held_out": len(held_out), "temperature_pairs": dict(sorted(temps.items())),
              **stats.as_dict()}
    log.info("model pairs (%s): %d prompts -> %d train + %d held-out pairs, %d without a differing pair",
             kind, len(sources), len(train), len(held_out), no_pair)
    return train, held_out, report


def meta_value(row: dict, key: str) -> Any:
    """`key` of a row's meta JSON, or None when the row has no meta, unparsable meta or no such key."""
    try:
        meta = json.loads(row.get("meta") or "{}")
    except (TypeError, ValueError):
        return None
    return meta.get(key) if isinstance(meta, dict) else None


def origin(row: dict) -> str:
    """'model' for a pair of the policy's answers, else 'ladder' (the world's hand-made answers)."""
    return meta_value(row, "origin") or "ladder"
