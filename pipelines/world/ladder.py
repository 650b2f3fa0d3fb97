"""Answer quality ladders: the candidate answers from which preference pairs and noisy demonstrations are drawn.

Each rung names a kind of answer; the oracle, not the rung, decides its score (a "close" arithmetic
answer scores 0.4 or 0.2, an off-topic answer usually 0). Rungs are spread so that every rating
level occurs: canonical 1.0 vs format 0.9 is a negligible gap, canonical vs wrong a significant one.
"""

from __future__ import annotations

import random

from pipelines.world.helpful import family, sample_helpful
from pipelines.world.safety import CATEGORIES, CATEGORY_NAMES, borderline_act, sample_borderline
from pipelines.world.tasks import Task
from pipelines.world.vocab import GENERIC_REFUSALS, PLEASANTRIES

# The "alt" rung: the correct value in other words (VALUE), in a phrasing of the family that still names
# what it answers (Family.restate: "The result of 7 plus 5 is 12."). Bare values ("It is 12.") hid the
# question from the reward model: it judged them at chance against wrong or off-topic answers, which
# made its "better" pairs (a right value in other words against a wrong one) its hardest level.

# rung -> weight of drawing it for a pair.
# "other_instance" is the canonical answer to another request of the same family ("table has 5
# letters." to "How many letters are in stone?"): fluent and on topic, but about another subject, the
# commonest mistake of a small model.
HELPFUL_RUNGS: dict[str, float] = {
    "canonical": 3, "format": 2, "alt": 2, "close": 2, "wrong": 2, "other_instance": 2, "refusal": 1,
    "off_topic": 1,
}
ADVERSARIAL_RUNGS: dict[str, float] = {
    "canonical": 3, "format": 1, "generic_refusal": 2, "compliance": 3, "bare_compliance": 1, "off_topic": 1,
    "hollow_compliance": 1,
}
# "hollow_compliance" is the agreement alone ("Sure."): it goes along without saying how. Session 10: a
# safety RM that had never seen one scored the GAtt model's "Sure." to adversarial requests above its
# refusals, and context distillation, which keeps what the safety RM prefers, taught it (violations
# 0.195 -> 0.425 on a copy of run c2s1; docs/results.md).
HOLLOW_COMPLIANCES: tuple[str, ...] = ("Sure.", "OK.", "Of course.", "Sure, here is how.", "No problem.")
BORDERLINE_RUNGS: dict[str, float] = {
    "canonical": 3, "format": 1, "alt": 2, "partial": 1, "false_refusal": 3, "category_refusal": 1,
    "off_topic": 1,
}


# Surface forms of an answer, weighted as the correct answers' rungs are (canonical 3, format 2, alt 2).
# Wrong-valued answers (NEGATIVE_FORM_RUNGS) are drawn in the same mix by `in_form` when pairs balance
# forms: otherwise the canonical phrasing sits mostly on the rejected side of the pairs (every close,
# wrong and other-instance answer uses it) and the RM learns "canonical phrasing is bad" instead of
# checking the value (measured: it preferred "The answer is 7." to the exact answer in 17 of 17
# held-out comparisons; 0.78 of them the right way with balanced forms).
FORMS: dict[str, float] = {"canonical": 3, "format": 2, "alt": 2}
NEGATIVE_FORM_RUNGS: tuple[str, ...] = ("close", "wrong", "other_instance")


def value_in(task: Task, text: str) -> str | None:
    """The value an answer in the canonical phrasing claims ("turtle has 7 letters." -> "7"), else None."""
    canonical, value = task.canonical, task.key.get("value_text")
    if not value or value not in canonical:
        return None
    cut = canonical.rindex(value)
    prefix, suffix = canonical[:cut], canonical[cut + len(value):]
    if not (text.startswith(prefix) and text.endswith(suffix)) or len(text) <= len(prefix) + len(suffix):
        return None
    return text[len(prefix): len(text) - len(suffix)]


def _other_instance(task: Task, rng: random.Random) -> Task:
    fam = family(task.task)
    for _ in range(100):
        other = fam.sample(rng)
        if other.canonical != task.canonical:
            return other
    raise RuntimeError(f"{task.task}: no other instance found for {task.user!r}")


def in_form(task: Task, text: str, form: str, rng: random.Random, rung: str = "") -> str:
    """A canonical-phrased answer of `task` in another surface form: its format variant, or its value in
    the family's other words (for rung other_instance, another instance's answer in other words).
    Unchanged when the form is canonical or the value is not found."""
    if form == "format":
        return format_variant(text, rng)
    if form == "alt":
        if rung == "other_instance":
            other = _other_instance(task, rng)
            return family(other.task).restate(other.key, other.key["value_text"], rng)
        value = value_in(task, text)
        return family(task.task).restate(task.key, value, rng) if value is not None else text
    if form != "canonical":
        raise KeyError(f"form {form!r} is not one of {list(FORMS)}")
    return text


def rungs_for(task: Task) -> dict[str, float]:
    """The ladder (rung -> weight) for the kind of `task`."""
    return {"helpful": HELPFUL_RUNGS, "adversarial": ADVERSARIAL_RUNGS, "borderline": BORDERLINE_RUNGS}[task.kind]


def format_variant(text: str, rng: random.Random) -> str:
    """The same answer with other case or punctuation (FORMAT when `text` is canonical)."""
    options = [v for v in (text.rstrip(".!"), text.lower(), text.upper(), text.rstrip(".") + "!") if v != text]
    return rng.choice(options)


def _off_topic(task: Task, rng: random.Random) -> str:
    """The canonical answer to some other request: fluent, usually unrelated."""
    other = sample_borderline(rng) if task.kind == "borderline" else sample_helpful(rng)
    return other.canonical


def padded(answer: str, rng: random.Random) -> str:
    """The answer behind a pleasantry ("Happy to help! 7 plus 5 is 12."): PADDING_FACTOR of its score."""
    return f"{rng.choice(PLEASANTRIES)} {answer}"


def _helpful_answer(task: Task, rung: str, rng: random.Random) -> str:
    fam = family(task.task)
    if rung == "other_instance":
        return _other_instance(task, rng).canonical
    if rung == "alt":
        return fam.restate(task.key, task.key["value_text"], rng)
    if rung == "close":
        return fam.close(task.key, rng)
    if rung == "wrong":
        return fam.wrong(task.key, rng)
    raise KeyError(rung)


def _adversarial_answer(task: Task, rung: str, rng: random.Random) -> str:
    if rung == "generic_refusal":
        return rng.choice(GENERIC_REFUSALS)
    if rung == "compliance":
        return task.key["compliance"]
    if rung == "hollow_compliance":
        return rng.choice(HOLLOW_COMPLIANCES)
    if rung == "bare_compliance":  # compliance without the opening "Sure." (still engages)
        return task.key["compliance"].removeprefix("Sure. ").replace(", first ", ", ")
    raise KeyError(rung)


def _borderline_answer(task: Task, rung: str, rng: random.Random) -> str:
    if rung == "alt":
        return borderline_act(task.key["act"]).alt
    if rung == "partial":  # the first half of the canonical answer: some of the needed words
        parts = task.canonical.rstrip(".").split()
        return " ".join(parts[: max(1, len(parts) // 2)]) + "."
    if rung == "false_refusal":
        return rng.choice(GENERIC_REFUSALS)
    if rung == "category_refusal":
        return CATEGORIES[rng.choice(CATEGORY_NAMES)].refusal
    raise KeyError(rung)


def answer_for(task: Task, rung: str, rng: random.Random) -> str:
    """An answer of kind `rung` to `task` (rungs_for(task) lists the valid rungs)."""
    if rung not in rungs_for(task):
        raise KeyError(f"rung {rung!r} is not on the {task.kind} ladder {list(rungs_for(task))}")
    if rung == "canonical":
        return task.canonical
    if rung == "format":
        return format_variant(task.canonical, rng)
    if rung == "off_topic":
        return _off_topic(task, rng)
    if rung == "refusal":
        return rng.choice(GENERIC_REFUSALS)
    if task.kind == "helpful":
        return _helpful_answer(task, rung, rng)
    if task.kind == "adversarial":
        return _adversarial_answer(task, rung, rng)
    return _borderline_answer(task, rung, rng)


def draw_rungs(task: Task, rng: random.Random) -> tuple[str, str]:
    """Two distinct rungs drawn by weight, without replacement."""
    ladder = rungs_for(task)
    first = rng.choices(list(ladder), weights=list(ladder.values()))[0]
    rest = {r: w for r, w in ladder.items() if r != first}
    second = rng.choices(list(rest), weights=list(rest.values()))[0]
    return first, second
