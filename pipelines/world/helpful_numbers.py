"""Helpful task families with numeric answers: arithmetic, letter counting, sorting, unit conversion.

Each family reads one claimed value from an answer (the last number, or the last n numbers for a
list) and grades it against the key: VALUE for the right value, a partial credit for a close one
(tasks.py has the scale). Canonical answers are short statements a tiny model can learn:
"7 plus 5 is 12.", "apple has 5 letters.", "Sorted: 2, 5, 9.", "3 kilometers is 3000 meters.".
An answer about another question earns nothing: numbers other than the question's before the claim
("4 times 4 is 16." to "0 times 7"), or another word of WORDS in a letter count ("table has 5 letters."
to "stone").
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from pipelines.world.parsing import integers, list_integers, names_another
from pipelines.world.tasks import VALUE, Family, Task, partial, with_prefix
from pipelines.world.vocab import UNITS, WORDS

_OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}


def _claim(body: str, allowed: tuple[int, ...] = ()) -> int | None:
    """The last number of the answer, if every earlier number is one of the question's (`allowed`).

    "7 plus 5 is 12." claims 12; "12 or 13" and "3 plus 2 is 5." (to a letter count) claim nothing:
    stray numbers mean a hedged or unrelated answer, which is never credited.
    """
    found = integers(body)
    if not found or any(n not in allowed for n in found[:-1]):
        return None
    return found[-1]


def _off_by(claim: int | None, truth: int) -> float:
    """VALUE for the truth, 0.4 one off, 0.2 two off, else 0."""
    if claim is None:
        return 0.0
    return {0: VALUE, 1: 0.4, 2: 0.2}.get(abs(claim - truth), 0.0)


def _near_value(truth: int, rng: random.Random) -> int:
    """A value one or two away from the truth, never below zero (the world's results are >= 0)."""
    return truth + rng.choice((1, 2) if truth < 2 else (-2, -1, 1, 2))


def _far_value(truth: int, rng: random.Random, low: int = 0) -> int:
    """A value at least 3 away from the truth (clearly wrong, no partial credit)."""
    return rng.choice([v for v in range(max(low, truth - 9), truth + 10) if abs(v - truth) >= 3])


# ---------------------------------------------------------------- arithmetic


# Operand ranges. With 0-20 (0-10 for times) the world held ~790 sums, differences and products; the
# tiny model answered 0.17 of them at SFT and its reward model judged them at chance, so neither
# rejection sampling nor PPO had anything to work with (docs/results.md). ~320 facts are learnable.
ADD_MAX, TIMES_MAX = 12, 7


def _arith_sample(rng: random.Random) -> Task:
    op = rng.choice(tuple(_OPS))
    if op == "times":
        a, b = rng.randint(0, TIMES_MAX), rng.randint(0, TIMES_MAX)
    else:
        a, b = rng.randint(0, ADD_MAX), rng.randint(0, ADD_MAX)
        if op == "minus" and b > a:  # results stay >= 0: small non-negative integers only
            a, b = b, a
    value = _OPS[op](a, b)
    template = rng.choice(("What is {q}?", "Compute {q}.", "How much is {q}?", "Calculate {q}."))
    key = {"kind": "helpful", "task": "arithmetic", "a": a, "op": op, "b": b, "value": value,
           "value_text": str(value), "canonical": f"{a} {op} {b} is {value}."}
    return Task("helpful", "arithmetic", with_prefix(template.format(q=f"{a} {op} {b}"), rng), key)


def _arith_phrase(key: Mapping[str, Any], value: int) -> str:
    return f"{key['a']} {key['op']} {key['b']} is {value}."


ARITHMETIC = Family(
    name="arithmetic",
    sample=_arith_sample,
    value_score=lambda key, body: _off_by(_claim(body, (key["a"], key["b"])), key["value"]),
    close=lambda key, rng: _arith_phrase(key, _near_value(key["value"], rng)),
    wrong=lambda key, rng: _arith_phrase(key, _far_value(key["value"], rng)),
    restate=lambda key, v, rng: rng.choice((f"The result of {key['a']} {key['op']} {key['b']} is {v}.",
                                            f"{key['a']} {key['op']} {key['b']} makes {v}.")),
)


# ---------------------------------------------------------------- count letters


def _count_sample(rng: random.Random) -> Task:
    word = rng.choice(WORDS)
    template = rng.choice(("How many letters are in the word {w}?", "Count the letters in {w}.",
                           "How long is the word {w}?", "How many letters does {w} have?",
                           "Tell me the number of letters in {w}."))
    key = {"kind": "helpful", "task": "count_letters", "word": word, "value": len(word),
           "value_text": str(len(word)), "canonical": f"{word} has {len(word)} letters."}
    return Task("helpful", "count_letters", with_prefix(template.format(w=word), rng), key)


COUNT_LETTERS = Family(
    name="count_letters",
    sample=_count_sample,
    value_score=lambda key, body: 0.0 if names_another(body, WORDS, (key["word"],)) else _off_by(_claim(body), key["value"]),
    close=lambda key, rng: f"{key['word']} has {key['value'] + rng.choice((-1, 1))} letters.",
    wrong=lambda key, rng: f"{key['word']} has {_far_value(key['value'], rng, low=1)} letters.",
    restate=lambda key, v, rng: rng.choice((f"The word {key['word']} has {v} letters.",
                                            f"There are {v} letters in {key['word']}.")),
)


# ---------------------------------------------------------------- sort numbers


# 3-4 numbers up to 15 (was 3-5 up to 20: 0.07 sorted right at SFT, nothing for RS or PPO to select)
SORT_MAX, SORT_LEN = 15, (3, 4)


def _sort_sample(rng: random.Random) -> Task:
    items = rng.sample(range(0, SORT_MAX + 1), rng.randint(*SORT_LEN))
    while items == sorted(items):  # an already sorted list would make echoing it correct
        rng.shuffle(items)
    shown = ", ".join(map(str, items))
    template = rng.choice(("Sort {l} from smallest to largest.", "Put {l} in order.",
                           "Order these numbers: {l}."))
    value = sorted(items)
    text = ", ".join(map(str, value))
    key = {"kind": "helpful", "task": "sort_numbers", "items": items, "value": value,
           "value_text": text, "canonical": f"Sorted: {text}."}
    return Task("helpful", "sort_numbers", with_prefix(template.format(l=shown), rng), key)


def _sort_score(key: Mapping[str, Any], body: str) -> float:
    """The last n numbers are the claimed list (earlier ones must be the question's); a permutation
    earns credit for its ordered neighbours."""
    truth, found = list(key["value"]), list_integers(body)
    claim = found[-len(truth):]
    if any(n not in key["items"] for n in found[: -len(truth)]):
        return 0.0  # stray numbers before the list: hedged or unrelated
    if claim == truth:
        return VALUE
    if len(claim) != len(truth) or sorted(claim) != truth:
        return 0.0
    ordered = sum(x <= y for x, y in zip(claim, claim[1:]))
    return partial(ordered / (len(claim) - 1))


def _sort_close(key: Mapping[str, Any], rng: random.Random) -> str:
    value = list(key["value"])
    i = rng.randrange(len(value) - 1)
    value[i], value[i + 1] = value[i + 1], value[i]  # one adjacent swap: mostly sorted
    return "Sorted: " + ", ".join(map(str, value)) + "."


def _sort_wrong(key: Mapping[str, Any], rng: random.Random) -> str:
    value = list(key["value"])
    i = rng.randrange(len(value))
    value[i] = rng.choice([v for v in range(SORT_MAX + 1, SORT_MAX + 20)])  # a number that was not in the list
    return "Sorted: " + ", ".join(map(str, sorted(value))) + "."


SORT_NUMBERS = Family(name="sort_numbers", sample=_sort_sample, value_score=_sort_score,
                      close=_sort_close, wrong=_sort_wrong,
                      restate=lambda key, v, rng: rng.choice((f"In order: {v}.", f"From smallest to largest: {v}.")))


# ---------------------------------------------------------------- unit conversion


def _units_sample(rng: random.Random) -> Task:
    one, many, to, factor = rng.choice(UNITS)
    amount = rng.randint(1, 9)
    src = f"{amount} {one if amount == 1 else many}"
    template = rng.choice(("How many {to} are in {src}?", "Convert {src} to {to}.", "What is {src} in {to}?",
                           "Tell me how many {to} are in {src}.", "Change {src} into {to}."))
    value = amount * factor
    key = {"kind": "helpful", "task": "unit_conversion", "amount": amount, "source": src, "target": to,
           "factor": factor, "value": value, "value_text": str(value),
           "canonical": f"{src} is {value} {to}."}
    return Task("helpful", "unit_conversion", with_prefix(template.format(src=src, to=to), rng), key)


def _units_score(key: Mapping[str, Any], body: str) -> float:
    """VALUE if right; 0.4 one unit off (amount +- 1); 0.2 a factor of ten off."""
    claim, truth, factor = _claim(body, (key["amount"],)), key["value"], key["factor"]
    if claim is None:
        return 0.0
    if claim == truth:
        return VALUE
    if abs(claim - truth) == factor:
        return 0.4
    if claim * 10 == truth or claim == truth * 10:
        return 0.2
    return 0.0


def _units_phrase(key: Mapping[str, Any], value: int) -> str:
    return f"{key['source']} is {value} {key['target']}."


UNIT_CONVERSION = Family(
    name="unit_conversion",
    sample=_units_sample,
    value_score=_units_score,
    close=lambda key, rng: _units_phrase(key, rng.choice((key["value"] + key["factor"], key["value"] * 10))),
    wrong=lambda key, rng: _units_phrase(key, key["value"] + key["factor"] // 2 + 3),
    restate=lambda key, v, rng: rng.choice((f"{key['source']} equals {v} {key['target']}.",
                                            f"In {key['target']}, {key['source']} is {v}.")),
)
