"""Helpful task families with word answers: reversing a word and looking up a fictional fact.

"apple reversed is elppa." is judged on the last word of the answer; "The capital of Zorbia is Velk."
on the last word that belongs to the relation's value set (vocab.py keeps those sets disjoint), so an
answer that names a wrong capital is never credited even if it also echoes the question.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from typing import Any

from pipelines.world.parsing import edit_distance, names_another, words
from pipelines.world.tasks import VALUE, Family, Task, partial, with_prefix
from pipelines.world.vocab import CAPITALS, COLOURS, CREATURES, FOODS, WORDS

# ---------------------------------------------------------------- reverse a word


def _reverse_sample(rng: random.Random) -> Task:
    word = rng.choice(WORDS)
    template = rng.choice(("Reverse the word {w}.", "Spell {w} backwards.", "What is {w} reversed?",
                           "Write {w} backwards.", "Reverse {w}."))
    value = word[::-1]
    key = {"kind": "helpful", "task": "reverse_word", "word": word, "value": value, "value_text": value,
           "canonical": f"{word} reversed is {value}."}
    return Task("helpful", "reverse_word", with_prefix(template.format(w=word), rng), key)


def _reverse_score(key: Mapping[str, Any], body: str) -> float:
    """The last word is the claim; same length with most letters in place earns partial credit.

    Echoing the word unreversed earns nothing (no word in WORDS is a palindrome), nor does an answer
    that names another word of WORDS ("kitten reversed is nettik." to "Reverse kite.").
    """
    found = words(body)
    if not found or names_another(body, WORDS, (key["word"], key["value"])):
        return 0.0  # nothing, or an answer about another word
    claim, truth = found[-1], key["value"]
    if claim == truth:
        return VALUE
    if claim == key["word"] or len(claim) != len(truth):
        return 0.0
    return partial(sum(a == b for a, b in zip(claim, truth)) / len(truth))


def _one_letter_changed(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    letter = rng.choice([c for c in string.ascii_lowercase if c != text[i]])
    return text[:i] + letter + text[i + 1:]


REVERSE_WORD = Family(
    name="reverse_word",
    sample=_reverse_sample,
    value_score=_reverse_score,
    close=lambda key, rng: f"{key['word']} reversed is {_one_letter_changed(key['value'], rng)}.",
    wrong=lambda key, rng: f"{key['word']} reversed is {key['word']}.",
    restate=lambda key, v, rng: rng.choice((f"{key['word']} backwards is {v}.", f"Spelled backwards, {key['word']} is {v}.")),
)


# ---------------------------------------------------------------- fact lookup (fictional tables)

_RELATIONS: dict[str, tuple[str, ...]] = {
    "capital": tuple(CAPITALS.values()),
    "colour": COLOURS,
    "food": FOODS,
}
_SUBJECTS: tuple[str, ...] = (*CAPITALS, *CREATURES)  # what a fact is about: places and creatures
_QUESTIONS: dict[str, tuple[str, ...]] = {
    "capital": ("What is the capital of {s}?", "Name the capital of {s}.", "Which city is the capital of {s}?",
                "Tell me the capital of {s}.", "What city is the capital of {s}?"),
    "colour": ("What colour is a {s}?", "What is the colour of a {s}?", "Which colour is a {s}?",
               "Tell me the colour of a {s}."),
    "food": ("What does a {s} eat?", "What food does a {s} eat?", "Tell me what a {s} eats.",
             "What is the food of a {s}?"),
}


def fact_statement(relation: str, subject: str, value: str) -> str:
    """The canonical sentence of a fact: also the world's pretraining phrasing."""
    if relation == "capital":
        return f"The capital of {subject} is {value}."
    if relation == "colour":
        return f"A {subject} is {value}."
    return f"A {subject} eats {value}."


def fact_value(relation: str, subject: str) -> str:
    """The true value of a relation for a subject, from the fixed tables."""
    if relation == "capital":
        return CAPITALS[subject]
    colour, food = CREATURES[subject]
    return colour if relation == "colour" else food


def _fact_sample(rng: random.Random) -> Task:
    relation = rng.choice(tuple(_RELATIONS))
    subject = rng.choice(tuple(CAPITALS) if relation == "capital" else tuple(CREATURES))
    value = fact_value(relation, subject)
    key = {"kind": "helpful", "task": "fact_lookup", "relation": relation, "subject": subject,
           "value": value, "value_text": value, "canonical": fact_statement(relation, subject, value)}
    question = rng.choice(_QUESTIONS[relation]).format(s=subject)
    return Task("helpful", "fact_lookup", with_prefix(question, rng), key)


def _fact_score(key: Mapping[str, Any], body: str) -> float:
    """The value named from the relation's set is the claim; a one-letter misspelling earns 0.4.

    Naming two different values ("Drisa or Velk") is a hedge and earns nothing, and so does an answer
    about another place or creature ("A snorf is red." to a question about a skree), right value or not.
    """
    truth = key["value"].lower()
    if names_another(body, _SUBJECTS, (key["subject"],)):
        return 0.0  # an answer about another place or creature
    candidates = {v.lower() for v in _RELATIONS[key["relation"]]}
    found = words(body)
    named = {w for w in found if w in candidates}
    if named:
        return VALUE if named == {truth} else 0.0
    if any(len(w) >= 3 and edit_distance(w, truth) == 1 for w in found):
        return 0.4
    return 0.0


def _fact_close(key: Mapping[str, Any], rng: random.Random) -> str:
    values = {v.lower() for v in _RELATIONS[key["relation"]]}
    while True:  # a misspelling that is not itself another value of the relation
        typo = _one_letter_changed(key["value"].lower(), rng)
        if typo not in values:
            break
    typo = typo.capitalize() if key["relation"] == "capital" else typo
    return fact_statement(key["relation"], key["subject"], typo)


def _fact_wrong(key: Mapping[str, Any], rng: random.Random) -> str:
    other = rng.choice([v for v in _RELATIONS[key["relation"]] if v != key["value"]])
    return fact_statement(key["relation"], key["subject"], other)


def _fact_restate(key: Mapping[str, Any], value: str, rng: random.Random) -> str:
    subject = key["subject"]
    options = {"capital": (f"{value} is the capital of {subject}.", f"{subject} has the capital {value}."),
               "colour": (f"The colour of a {subject} is {value}.", f"A {subject} has the colour {value}."),
               "food": (f"The food of a {subject} is {value}.", f"A {subject} feeds on {value}.")}
    return rng.choice(options[key["relation"]])


FACT_LOOKUP = Family(name="fact_lookup", sample=_fact_sample, value_score=_fact_score,
                     close=_fact_close, wrong=_fact_wrong, restate=_fact_restate)
