"""Pretraining text: the "language of the world" in plain prose (not chat format).

Short documents of a few sentences that state the world's knowledge (every fact of the fictional
tables, arithmetic, spellings, sorting, units), show questions and answers in prose, and show refusals,
compliance, borderline advice and the constraint styles (upper case, greetings, signatures), so the
base model and its tokenizer learn the whole vocabulary before SFT (LLAMA2_SPEC.md section 3's role
of pretraining). Facts are general knowledge and may touch any instance; question/answer examples
use train-split instances only, so no evaluation prompt appears verbatim.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pipelines.world.constraints import apply_constraints, sample_constraints, system_text
from pipelines.world.helpful import sample_helpful
from pipelines.world.helpful_words import fact_statement, fact_value
from pipelines.world.safety import BORDERLINE_ACTS, sample_adversarial, sample_borderline
from pipelines.world.split import draw_in_split
from pipelines.world.vocab import CAPITALS, CREATURES, END_WORDS, GREETINGS, PERSONAS, UNITS, WORDS

_UPPER_FRACTION = 0.1  # sentences written in upper case (so the tokenizer sees upper-case text)
_DECORATED_FRACTION = 0.08  # sentences with a greeting / end word / signature


def _fact(rng: random.Random, eval_fraction: float) -> str:
    if rng.random() < 0.4:
        place = rng.choice(tuple(CAPITALS))
        return rng.choice((fact_statement("capital", place, CAPITALS[place]),
                           f"{CAPITALS[place]} is the capital of {place}."))
    creature = rng.choice(tuple(CREATURES))
    relation = rng.choice(("colour", "food"))
    return fact_statement(relation, creature, fact_value(relation, creature))


def _numbers(rng: random.Random, eval_fraction: float) -> str:
    task = sample_helpful(rng, rng.choice(("arithmetic", "sort_numbers", "unit_conversion")))
    if task.task == "unit_conversion" and rng.random() < 0.5:
        one, _, to, factor = rng.choice(UNITS)
        return f"One {one} is {factor} {to}."
    return task.canonical


def _spelling(rng: random.Random, eval_fraction: float) -> str:
    word = rng.choice(WORDS)
    return rng.choice((
        f"The letters of {word} are {' '.join(word)}.",
        f"{word} has {len(word)} letters.",
        f"{word} reversed is {word[::-1]}.",
        f"Backwards, {word} is spelled {' '.join(reversed(word))}.",
    ))


def _qa(rng: random.Random, eval_fraction: float) -> str:
    task = draw_in_split(sample_helpful, rng, "train", eval_fraction)
    return rng.choice((f'Someone asked: "{task.user}" The answer was: "{task.canonical}"',
                       f"Q: {task.user} A: {task.canonical}"))


def _safety(rng: random.Random, eval_fraction: float) -> str:
    task = draw_in_split(sample_adversarial, rng, "train", eval_fraction)
    if rng.random() < 0.7:
        return f'Asked "{task.user}", a safe assistant said: "{task.canonical}"'
    return f'Asked "{task.user}", a careless assistant said: "{task.key["compliance"]}" That was harmful.'


def _borderline(rng: random.Random, eval_fraction: float) -> str:
    if rng.random() < 0.5:
        act = rng.choice(BORDERLINE_ACTS)
        return f"To {act.act}: {act.answer}"
    task = draw_in_split(sample_borderline, rng, "train", eval_fraction)
    return f'Asked "{task.user}", a good assistant said: "{task.canonical}" It is a safe question.'


def _style(rng: random.Random, eval_fraction: float) -> str:
    if rng.random() < 0.6:  # an instruction and an answer that keeps it (the constraints' vocabulary)
        constraints = sample_constraints(rng)
        task = draw_in_split(sample_helpful, rng, "train", eval_fraction)
        answer = apply_constraints(task.canonical, constraints)
        return f'Told "{system_text(constraints)}", the assistant answered: "{answer}"'
    return rng.choice((
        f"{rng.choice(PERSONAS)} always signs every note.",
        f'"{rng.choice(GREETINGS)}!" is a friendly greeting.',
        "SOME PEOPLE ALWAYS WRITE IN UPPER CASE.",
        f"A radio operator ends every message with the word {rng.choice(END_WORDS)}.",
    ))


_SENTENCES: dict[Callable[[random.Random, float], str], float] = {
    _fact: 4, _numbers: 3, _spelling: 2, _qa: 3, _safety: 1.5, _borderline: 1.5, _style: 1.5,
}


def _sentence(rng: random.Random, eval_fraction: float) -> str:
    make = rng.choices(list(_SENTENCES), weights=list(_SENTENCES.values()))[0]
    text = make(rng, eval_fraction)
    u = rng.random()
    if u < _UPPER_FRACTION:
        return text.upper()
    if u < _UPPER_FRACTION + _DECORATED_FRACTION:
        return apply_constraints(text, [c for c in sample_constraints(rng, 1) if c["kind"] != "upper"])
    return text


def generate_pretrain(count: int, rng: random.Random, eval_fraction: float) -> tuple[list[dict], dict]:
    """`count` documents of 3-6 sentences each."""
    rows = []
    for i in range(count):
        text = " ".join(_sentence(rng, eval_fraction) for _ in range(rng.randint(3, 6)))
        rows.append({"id": f"pt-{i:06d}", "text": text})
    return rows, {"rows": len(rows), "characters": sum(len(r["text"]) for r in rows)}
