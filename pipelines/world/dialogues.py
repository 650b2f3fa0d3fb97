"""Multi-turn dialogues of the world: SFT demonstrations, Ghost Attention seeds, eval constraint dialogues.

A dialogue is an optional system message stating the constraints, then user turns each answered by
its canonical answer decorated to keep every constraint (constraints.apply_constraints). The row's
`meta` holds one answer key per user turn and the constraints, so `oracle.judge_dialogue` can replay
it (LLAMA2_SPEC.md section 9 measures adherence by turn number).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pipelines.world.config import BundleConfig
from pipelines.world.constraints import apply_constraints, keeps_all, sample_constraints, system_text
from pipelines.world.helpful import sample_helpful
from pipelines.world.ladder import answer_for, padded
from pipelines.world.safety import sample_adversarial, sample_borderline
from pipelines.world.split import draw_in_split
from pipelines.world.tasks import Task, strip_opener

# Imperfect answers for `sft_noise`, per kind: right value in another form, or a close value.
_NOISY_RUNGS = {
    "helpful": ("format", "alt", "close"),
    "borderline": ("format", "alt", "partial"),
    "adversarial": ("generic_refusal",),
}


def build_messages(tasks: Sequence[Task], answers: Sequence[str], constraints: Sequence[dict]) -> list[dict]:
    """[system?] user assistant ... with each answer decorated by the constraints."""
    if len(tasks) != len(answers):
        raise ValueError(f"build_messages: {len(tasks)} user turns but {len(answers)} answers")
    messages = [{"role": "system", "content": system_text(constraints)}] if constraints else []
    for task, answer in zip(tasks, answers):
        messages.append({"role": "user", "content": task.user})
        messages.append({"role": "assistant", "content": apply_constraints(answer, constraints)})
    return messages


def without_prefix(task: Task) -> Task:
    """The same request without its opener ("Quick question: ..."): a shorter instance of its own."""
    return dataclasses.replace(task, user=strip_opener(task.user))


def draw_turn(
    rng: random.Random, split: str, eval_fraction: float, adversarial: float, borderline: float, plain: bool = False,
    categories: Sequence[str] | None = None,
) -> Task:
    """One user turn of `split`: adversarial / borderline with the given probabilities, else helpful.

    `categories` limits adversarial turns to those risk categories (default: all).

    plain=True drops the opener, to keep long dialogues inside the tiny model's 512-token context.
    """
    u = rng.random()
    if u < adversarial:
        sampler = sample_adversarial if categories is None else (lambda r: sample_adversarial(r, r.choice(categories)))
    elif u < adversarial + borderline:
        sampler = sample_borderline
    else:
        sampler = sample_helpful
    if plain:
        return draw_in_split(lambda r: without_prefix(sampler(r)), rng, split, eval_fraction)
    return draw_in_split(sampler, rng, split, eval_fraction)


def _dialogue_row(row_id: str, source: str, tasks: list[Task], answers: list[str], constraints: list[dict],
                  extra: dict[str, Any]) -> dict:
    meta = {"turns": [t.key for t in tasks], "constraints": constraints, **extra}
    return {"id": row_id, "messages": build_messages(tasks, answers, constraints), "source": source,
            "meta": json.dumps(meta, sort_keys=True)}


def generate_sft(cfg: BundleConfig, rng: random.Random) -> tuple[list[dict], dict]:
    """SFT demonstrations: 1..sft_max_turns turns (shorter ones likelier; those with a system instruction
    at most sft_constraint_max_turns), canonical answers, some noisy, and a share of the helpful answers
    (noisy or not) opened with a pleasantry (sft_padded_fraction)."""
    rows, turn_kinds, noisy_total, constrained, unsafe, padded_total = [], Counter(), 0, 0, 0, 0
    lengths = list(range(1, cfg.sft_max_turns + 1))
    for i in range(cfg.sft_dialogues):
        n = rng.choices(lengths, weights=[1.0 / n for n in lengths])[0]
        constraints = sample_constraints(rng) if rng.random() < cfg.sft_constraint_fraction else []
        if constraints and cfg.sft_constraint_max_turns:
            n = min(n, cfg.sft_constraint_max_turns)
        tasks = [draw_turn(rng, "train", cfg.eval_fraction, cfg.safety_demo_fraction, cfg.sft_borderline_fraction)
                 for _ in range(n)]
        answers, noisy, unsafe_turns, padded_turns = [], [], [], []
        for t, task in enumerate(tasks, start=1):
            turn_kinds[task.task] += 1
            answer = task.canonical
            if task.kind == "adversarial" and rng.random() < cfg.sft_unsafe_fraction:
                answer = answer_for(task, "compliance", rng)
                unsafe_turns.append(t)
            elif rng.random() < cfg.sft_noise:
                noisy_answer = answer_for(task, rng.choice(_NOISY_RUNGS[task.kind]), rng)
                # a demonstration keeps its system constraints: a bare number ("10") has no letter to be
                # upper case, so under that constraint such a draw stays canonical
                if keeps_all(apply_constraints(noisy_answer, constraints), constraints):
                    answer = noisy_answer
                # a case variant can become the canonical answer again under the upper-case constraint
                if apply_constraints(answer, constraints) != apply_constraints(task.canonical, constraints):
                    noisy.append(t)
            # padding is independent of the noise: a plain answer is no likelier to be right than a padded one
            if task.kind == "helpful" and rng.random() < cfg.sft_padded_fraction:
                answer = padded(answer, rng)
                padded_turns.append(t)
            answers.append(answer)
        noisy_total += len(noisy)
        padded_total += len(padded_turns)
        unsafe += len(unsafe_turns)
        constrained += bool(constraints)
        rows.append(_dialogue_row(f"sft-{i:06d}", "world_sft", tasks, answers, constraints,
                                 {"noisy_turns": noisy, "unsafe_turns": unsafe_turns, "padded_turns": padded_turns}))
    stats = {"rows": len(rows), "turns": dict(sorted(turn_kinds.items())), "noisy_answers": noisy_total,
             "padded_answers": padded_total,
             "with_constraints": constrained, "unsafe_demonstrations": unsafe}
    return rows, stats


def generate_gatt(cfg: BundleConfig, rng: random.Random) -> tuple[list[dict], dict]:
    """Ghost Attention seeds: gatt_min..gatt_max helpful/borderline turns under 1-2 constraints, and
    adversarial turns (`gatt_adversarial_fraction`, from the RL risk categories): a policy fine-tuned on
    answering alone unlearns its refusals (measured: violations 0.065 -> 0.17 after GAtt).

    meta["instruction"] is the system text; the GAtt stage appends it to every user turn, samples
    answers with the latest model, then keeps it in the first turn only (LLAMA2_SPEC.md section 9).
    The assistant turns here are the canonical compliant answers (usable directly, or as a reference).
    """
    rows, kinds = [], Counter()
    for i in range(cfg.gatt_dialogues):
        n = rng.randint(cfg.gatt_min_turns, cfg.gatt_max_turns)
        constraints = sample_constraints(rng)
        tasks = [draw_turn(rng, "train", cfg.eval_fraction, cfg.gatt_adversarial_fraction, cfg.sft_borderline_fraction,
                           plain=True, categories=cfg.rl_categories)
                 for _ in range(n)]
        kinds.update(c["kind"] for c in constraints)
        rows.append(_dialogue_row(f"gatt-{i:06d}", "world_gatt", tasks, [t.canonical for t in tasks], constraints,
                                  {"instruction": system_text(constraints)}))
    return rows, {"rows": len(rows), "constraint_kinds": dict(sorted(kinds.items()))}


def generate_eval_dialogues(cfg: BundleConfig, rng: random.Random) -> tuple[list[dict], dict]:
    """Held-out constraint dialogues of eval_dialogue_turns user turns (eval-split instances only).

    Stored as dialogue rows with the canonical compliant answers; an evaluator replays the user turns
    (its own answers in context) and judges each with `oracle.judge_dialogue`.
    """
    rows, kinds = [], Counter()
    for i in range(cfg.eval_dialogues):
        constraints = sample_constraints(rng)
        tasks = [draw_turn(rng, "eval", cfg.eval_fraction, 0.0, cfg.sft_borderline_fraction, plain=True)
                 for _ in range(cfg.eval_dialogue_turns)]
        kinds.update(c["kind"] for c in constraints)
        rows.append(_dialogue_row(f"evaldlg-{i:06d}", "world_eval_dialogue", tasks, [t.canonical for t in tasks],
                                  constraints, {"split": "eval"}))
    return rows, {"rows": len(rows), "constraint_kinds": dict(sorted(kinds.items()))}
