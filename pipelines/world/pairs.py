"""Preference pairs with rating levels and safety labels derived from the oracle (LLAMA2_SPEC.md s.5).

For a prompt, two answers are drawn from its quality ladder and judged by the oracle. Their score is
helpfulness minus 1 for a violation (in [-1, 1]), so a safe non-answer beats an unsafe one. The
higher-scoring answer is chosen; the rating level comes from the score gap:

    gap >= 0.75 significantly_better, >= 0.5 better, >= 0.25 slightly_better, > 0 negligibly_better

Pairs with a zero gap carry no preference and are skipped (counted). The simulated annotator is a
Bradley-Terry judge, the model the RMs' ranking loss assumes: it prefers the worse answer with
probability sigmoid(-gap / annotator_noise) (`flip_probability`), so agreement falls with the
preference strength as human agreement does (paper section 3.2.2, Table 8). At the default temperature
0.15 a gap of 0.1 (exact vs the same answer in lower case) is flipped 34% of the time, "negligibly better
- unsure" indeed, a gap of 0.3 12%, and a "significantly better" gap of 0.8 0.5%. A flipped pair keeps
its rating. Safety pairs get the paper's three-way label from the two violation flags; a pair whose
chosen answer is unsafe while the rejected one is safe is dropped (counted), as in the paper.
The built-in ladders never yield "both_unsafe": every violation scores helpfulness 0, so two unsafe
answers tie and are skipped; the label exists for imported data.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.world.ladder import FORMS, NEGATIVE_FORM_RUNGS, answer_for, draw_rungs, in_form, padded
from pipelines.world.oracle import Judgment, judge_turn
from pipelines.world.tasks import Task

RATING_THRESHOLDS: tuple[tuple[float, str], ...] = (
    (0.75, "significantly_better"), (0.5, "better"), (0.25, "slightly_better"),
)
_EPS = 1e-9  # scores are sums of a few decimals; compare gaps with a tolerance


def rating_from_gap(gap: float) -> str:
    """The paper's four-level preference strength for an oracle score gap > 0."""
    if gap <= _EPS:
        raise ValueError(f"a preference needs a positive score gap, got {gap}")
    for threshold, level in RATING_THRESHOLDS:
        if gap >= threshold - _EPS:
            return level
    return "negligibly_better"


def flip_probability(gap: float, annotator_noise: float) -> float:
    """P(the annotator prefers the answer the oracle scores `gap` lower): sigmoid(-gap / annotator_noise),
    a Bradley-Terry annotator at temperature `annotator_noise`; 0 when the noise is 0."""
    if annotator_noise <= 0.0:
        return 0.0
    return 1.0 / (1.0 + math.exp(min(gap / annotator_noise, 700.0)))


def safety_label(chosen_unsafe: bool, rejected_unsafe: bool) -> str | None:
    """The three-way safety label; None for chosen unsafe + rejected safe (such pairs are dropped)."""
    if chosen_unsafe and not rejected_unsafe:
        return None
    if chosen_unsafe:
        return "both_unsafe"
    return "chosen_safe_rejected_unsafe" if rejected_unsafe else "both_safe"


def pair_score(j: Judgment) -> float:
    """Helpfulness minus a full point for a violation."""
    return j.helpfulness - (1.0 if j.violation else 0.0)


@dataclass
class PairStats:
    """What pair generation made, skipped and dropped."""

    made: int = 0
    skipped_zero_gap: int = 0
    dropped_unsafe_chosen: int = 0
    flipped: int = 0
    ratings: Counter = field(default_factory=Counter)
    safety_labels: Counter = field(default_factory=Counter)
    tasks: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "made": self.made, "skipped_zero_gap": self.skipped_zero_gap,
            "dropped_unsafe_chosen": self.dropped_unsafe_chosen, "flipped": self.flipped,
            "ratings": dict(sorted(self.ratings.items())), "safety_labels": dict(sorted(self.safety_labels.items())),
            "tasks": dict(sorted(self.tasks.items())),
        }


def _annotate(
    key: dict, user: str, answers: tuple[str, str], kind: str, rng: random.Random, annotator_noise: float,
    stats: PairStats,
) -> tuple[dict, dict, int] | None:
    """(row without meta, meta, index of the chosen answer), or None for a skipped/dropped pair."""
    if kind not in ("helpfulness", "safety"):
        raise ValueError(f"preference kind must be 'helpfulness' or 'safety', got {kind!r}")
    judgments = [judge_turn(key, a) for a in answers]
    scores = [pair_score(j) for j in judgments]
    gap = abs(scores[0] - scores[1])
    if gap <= _EPS or answers[0].strip() == answers[1].strip():
        stats.skipped_zero_gap += 1
        return None
    rating = rating_from_gap(gap)
    best, worst = (0, 1) if scores[0] > scores[1] else (1, 0)
    flipped = rng.random() < flip_probability(gap, annotator_noise)
    if flipped:
        best, worst = worst, best
    label = None
    if kind == "safety":
        label = safety_label(judgments[best].violation, judgments[worst].violation)
        if label is None:  # LLAMA2_SPEC.md section 5: chosen unsafe, rejected safe -> dropped
            stats.dropped_unsafe_chosen += 1
            return None
    stats.flipped += flipped
    stats.ratings[rating] += 1
    stats.tasks[key["task"]] += 1
    if label:
        stats.safety_labels[label] += 1
    meta = {"turns": [key], "constraints": [], "chosen_score": scores[best], "rejected_score": scores[worst],
            "gap": round(gap, 4), "flipped": flipped}
    row = {
        "prompt": [{"role": "user", "content": user}],
        "chosen": answers[best], "rejected": answers[worst], "rating": rating, "safety_label": label,
        "kind": kind, "is_safety": key["kind"] == "adversarial", "task": key["task"],
    }
    return row, meta, best


def annotate(
    key: dict, user: str, answers: tuple[str, str], kind: str, rng: random.Random, annotator_noise: float,
    stats: PairStats, extra_meta: dict[str, Any] | None = None,
) -> dict | None:
    """The simulated annotator's preference row for two answers to one user turn, or None.

    The oracle scores both answers (helpfulness minus 1 for a violation); the rating level comes from
    the gap, a noisy annotator may flip the preference (keeping the rating), and safety pairs get the
    three-way label. Ties and identical answers are skipped, and a safety pair whose chosen answer is
    unsafe while the rejected one is safe is dropped; both are counted in `stats`, and give None.
    The row has every preferences column but "id" (the caller names rows); its meta says which of the
    two answers was chosen (`chosen_index`).
    """
    out = _annotate(key, user, answers, kind, rng, annotator_noise, stats)
    if out is None:
        return None
    row, meta, best = out
    return {**row, "meta": json.dumps({**meta, **(extra_meta or {}), "chosen_index": best}, sort_keys=True)}


def _formed(task: Task, rung: str, rng: random.Random, balance_forms: bool) -> tuple[str, str]:
    """(rung name, answer); with balance_forms a wrong-valued helpful answer takes a drawn surface form
    (rung "close@alt", "other_instance@format", ...)."""
    answer = answer_for(task, rung, rng)
    if not balance_forms or task.kind != "helpful" or rung not in NEGATIVE_FORM_RUNGS:
        return rung, answer
    form = rng.choices(list(FORMS), weights=list(FORMS.values()))[0]
    if form == "canonical":
        return rung, answer
    formed = in_form(task, answer, form, rng, rung)
    return (f"{rung}@{form}", formed) if formed != answer else (rung, answer)


def make_pair(task: Task, kind: str, rng: random.Random, annotator_noise: float, stats: PairStats,
              padded_fraction: float = 0.0, balance_forms: bool = False) -> dict | None:
    """One preference row for two ladder answers to `task` (kind "helpfulness" or "safety"), or None.

    With probability `padded_fraction` (helpful tasks) the two answers are one ladder answer and the
    same answer opened by a pleasantry: a comparison that only the padding decides. With
    `balance_forms` wrong-valued helpful answers come in the surface forms of the right ones
    (ladder.FORMS), so that only the value tells them apart.
    """
    if task.kind == "helpful" and padded_fraction > 0 and rng.random() < padded_fraction:
        rung, base = _formed(task, draw_rungs(task, rng)[0], rng, balance_forms)
        pair = [(rung, base), (f"padded_{rung}", padded(base, rng))]
        if rng.random() < 0.5:
            pair.reverse()
        rungs, answers = (pair[0][0], pair[1][0]), (pair[0][1], pair[1][1])
    else:
        (r0, a0), (r1, a1) = (_formed(task, r, rng, balance_forms) for r in draw_rungs(task, rng))
        rungs, answers = (r0, r1), (a0, a1)
    out = _annotate(task.key, task.user, answers, kind, rng, annotator_noise, stats)
    if out is None:
        return None
    row, meta, best = out
    meta.update(chosen_rung=rungs[best], rejected_rung=rungs[1 - best])
    return {**row, "meta": json.dumps(meta, sort_keys=True)}


def make_pairs(
    count: int, kind: str, draw_task: Callable[[random.Random], Task], rng: random.Random,
    annotator_noise: float, id_prefix: str, padded_fraction: float = 0.0, balance_forms: bool = False,
) -> tuple[list[dict], PairStats]:
    """`count` preference rows from tasks drawn by `draw_task`; skipped/dropped draws are replaced."""
    if kind not in ("helpfulness", "safety"):
        raise ValueError(f"preference kind must be 'helpfulness' or 'safety', got {kind!r}")
    if not 0.0 <= annotator_noise <= 1.0:
        raise ValueError(f"annotator_noise must be in [0, 1], got {annotator_noise}")
    stats, rows = PairStats(), []
    attempts = 0
    while len(rows) < count:
        attempts += 1
        if attempts > 20 * count + 100:
            raise RuntimeError(f"{kind} pairs: only {len(rows)} of {count} after {attempts} draws: {stats.as_dict()}")
        row = make_pair(draw_task(rng), kind, rng, annotator_noise, stats, padded_fraction, balance_forms)
        if row is not None:
            rows.append({"id": f"{id_prefix}-{len(rows):06d}", **row})
    stats.made = len(rows)
    return rows, stats
