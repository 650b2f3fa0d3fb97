"""Prompt sets: RL training prompts (split "train") and held-out evaluation prompts (split "eval").

Every row is single-turn and carries the oracle's answer key in `meta`; `is_safety` marks the
adversarial prompts (IS_SAFETY of LLAMA2_SPEC.md section 8's reward combination). Evaluation prompts
are unique and balanced over families / risk categories; both sets draw only instances of their own
split (split.py), so they never overlap.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable

from pipelines.world.config import BundleConfig
from pipelines.world.dialogues import draw_turn
from pipelines.world.helpful import FAMILY_NAMES, sample_helpful
from pipelines.world.safety import CATEGORY_NAMES, sample_adversarial, sample_borderline
from pipelines.world.split import draw_in_split, instance_text
from pipelines.world.tasks import Task

_UNIQUE_ATTEMPTS = 200  # draws per eval prompt before the instance space counts as exhausted


def prompt_row(row_id: str, task: Task, split: str) -> dict:
    """A single-turn prompt row for `task`."""
    meta = {"turns": [task.key], "constraints": []}
    return {"id": row_id, "messages": [{"role": "user", "content": task.user}], "kind": task.kind,
            "task": task.task, "is_safety": task.kind == "adversarial",
            "meta": json.dumps(meta, sort_keys=True), "split": split}


def generate_rl_prompts(cfg: BundleConfig, rng: random.Random) -> tuple[list[dict], dict]:
    """RL prompts (train split): adversarial / borderline / helpful by the configured mix; the adversarial
    ones from the first `rl_risk_categories` risk categories only."""
    rows, counts = [], Counter()
    for i in range(cfg.rl_prompts):
        task = draw_turn(rng, "train", cfg.eval_fraction, cfg.rl_adversarial_fraction, cfg.rl_borderline_fraction,
                         categories=cfg.rl_categories)
        counts[f"{task.kind}/{task.task}"] += 1
        rows.append(prompt_row(f"rl-{i:06d}", task, "train"))
    return rows, {"rows": len(rows), "tasks": dict(sorted(counts.items()))}


def _unique_eval(
    count: int, kind: str, sampler_for: Callable[[int], Callable[[random.Random], Task]],
    rng: random.Random, eval_fraction: float, seen: set[str],
) -> list[Task]:
    """`count` eval-split tasks that are distinct instances (split.instance_text); sampler_for(i) gives
    the i-th task's sampler."""
    tasks: list[Task] = []
    for i in range(count):
        for _ in range(_UNIQUE_ATTEMPTS):
            task = draw_in_split(sampler_for(i), rng, "eval", eval_fraction)
            if instance_text(task) not in seen:
                break
        else:
            raise RuntimeError(
                f"eval prompts: could not find {count} distinct {kind} eval instances (found {len(tasks)}); "
                f"lower the eval_{kind} count or raise eval_fraction ({eval_fraction})"
            )
        seen.add(instance_text(task))
        tasks.append(task)
    return tasks


def generate_eval_prompts(cfg: BundleConfig, rng: random.Random) -> tuple[list[dict], dict]:
    """Held-out single-turn prompts: eval_helpful + eval_adversarial + eval_borderline distinct instances."""
    seen: set[str] = set()

    def helpful(i: int) -> Callable[[random.Random], Task]:
        return lambda r: sample_helpful(r, FAMILY_NAMES[i % len(FAMILY_NAMES)])

    def adversarial(i: int) -> Callable[[random.Random], Task]:
        return lambda r: sample_adversarial(r, CATEGORY_NAMES[i % len(CATEGORY_NAMES)])

    tasks = (
        _unique_eval(cfg.eval_helpful, "helpful", helpful, rng, cfg.eval_fraction, seen)
        + _unique_eval(cfg.eval_adversarial, "adversarial", adversarial, rng, cfg.eval_fraction, seen)
        + _unique_eval(cfg.eval_borderline, "borderline", lambda i: sample_borderline, rng, cfg.eval_fraction, seen)
    )
    rows = [prompt_row(f"eval-{i:06d}", task, "eval") for i, task in enumerate(tasks)]
    counts = Counter(f"{t.kind}/{t.task}" for t in tasks)
    return rows, {"rows": len(rows), "tasks": dict(sorted(counts.items()))}
