"""System-level constraints that must hold over every assistant turn (Ghost Attention, LLAMA2_SPEC.md s.9).

Four kinds, combined 1-2 per dialogue, each phrased fully ("Always answer in upper case.") or, half
the time, tersely ("Style: upper case."), as the paper shortens its instructions ("Figure: Napoleon"):

  upper     every letter of the answer is upper case
  greeting  the answer begins with a fixed greeting ("Ahoy! ...")
  end_word  the answer ends with a fixed word ("... Over.") (before a persona signature, if any)
  persona   the answer is signed as a persona ("... - Captain Byte")

A constraint is a JSON-able dict {"kind", "value", "text"} (value is None for "upper"). Decoration is
applied in a fixed order (greeting, end word, signature, then upper case) whatever the list order.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.world.vocab import END_WORDS, GREETINGS, PERSONAS

CONSTRAINT_KINDS: tuple[str, ...] = ("upper", "greeting", "end_word", "persona")
_VALUES: dict[str, tuple[str, ...]] = {"greeting": GREETINGS, "end_word": END_WORDS, "persona": PERSONAS}
_FULL = {
    "upper": "Always answer in upper case.",
    "greeting": 'Always begin your answer with "{v}!".',
    "end_word": 'Always end your answer with the word "{v}".',
    "persona": "Always sign your answer as {v}.",
}
_TERSE = {
    "upper": "Style: upper case.",
    "greeting": "Greeting: {v}!",
    "end_word": "End word: {v}.",
    "persona": "Persona: {v}.",
}

Constraint = Mapping[str, Any]


def make_constraint(kind: str, value: str | None = None, terse: bool = False) -> dict[str, Any]:
    """A constraint of `kind` with its phrasing; `value` is required for every kind but "upper"."""
    if kind not in CONSTRAINT_KINDS:
        raise ValueError(f"unknown constraint kind {kind!r}; expected one of {list(CONSTRAINT_KINDS)}")
    if (kind == "upper") != (value is None):
        expected = "None" if kind == "upper" else "a string"
        raise ValueError(f"constraint {kind!r}: value must be {expected}, got {value!r}")
    text = (_TERSE if terse else _FULL)[kind].format(v=value)
    return {"kind": kind, "value": value, "text": text}


def sample_constraints(rng: random.Random, count: int | None = None) -> list[dict[str, Any]]:
    """1-2 constraints of distinct kinds (or `count`), each phrased tersely half the time."""
    count = count if count is not None else rng.randint(1, 2)
    kinds = rng.sample(CONSTRAINT_KINDS, count)
    chosen = []
    for kind in sorted(kinds, key=CONSTRAINT_KINDS.index):
        value = None if kind == "upper" else rng.choice(_VALUES[kind])
        chosen.append(make_constraint(kind, value, terse=rng.random() < 0.5))
    return chosen


def system_text(constraints: Sequence[Constraint]) -> str:
    """The system message stating the constraints."""
    return " ".join(c["text"] for c in constraints)


def _by_kind(constraints: Sequence[Constraint]) -> dict[str, Constraint]:
    found: dict[str, Constraint] = {}
    for c in constraints:
        if c.get("kind") not in CONSTRAINT_KINDS:
            raise ValueError(
                f"unknown constraint kind {c.get('kind')!r} in {dict(c)}; expected one of {list(CONSTRAINT_KINDS)}"
            )
        if c["kind"] in found:
            raise ValueError(f"two constraints of kind {c['kind']!r}: {[dict(x) for x in constraints]}")
        found[c["kind"]] = c
    return found


def apply_constraints(answer: str, constraints: Sequence[Constraint]) -> str:
    """What a compliant answer looks like: `answer` decorated by every constraint."""
    kinds = _by_kind(constraints)
    text = answer.strip()
    if "greeting" in kinds:
        text = f"{kinds['greeting']['value']}! {text}"
    if "end_word" in kinds:
        text = f"{text} {kinds['end_word']['value']}."
    if "persona" in kinds:
        text = f"{text} - {kinds['persona']['value']}"
    if "upper" in kinds:
        text = text.upper()
    return text


def _signature(persona: str) -> re.Pattern[str]:
    return re.compile(rf"\s*[-\u2013\u2014]\s*{re.escape(persona)}\s*[.!]?\s*$", re.IGNORECASE)


def _end_word(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?:^|\s){re.escape(word)}\s*[.!]?\s*$", re.IGNORECASE)


def _greeting(greeting: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(greeting)}\b\s*[!,.]?\s*", re.IGNORECASE)


def check_constraints(answer: str, constraints: Sequence[Constraint]) -> dict[str, bool]:
    """Whether `answer` keeps each constraint, by kind. Case is ignored except by "upper"."""
    kinds = _by_kind(constraints)
    kept: dict[str, bool] = {}
    for kind, c in kinds.items():
        if kind == "upper":
            kept[kind] = any(ch.isalpha() for ch in answer) and not any(ch.islower() for ch in answer)
        elif kind == "greeting":
            kept[kind] = bool(_greeting(c["value"]).match(answer))
        elif kind == "persona":
            kept[kind] = bool(_signature(c["value"]).search(answer))
        else:  # end_word: the word closes the answer, before the signature if one is required
            text = _signature(kinds["persona"]["value"]).sub("", answer) if "persona" in kinds else answer
            kept[kind] = bool(_end_word(c["value"]).search(text))
    return kept


def keeps_all(answer: str, constraints: Sequence[Constraint]) -> bool:
    """Whether `answer` keeps every constraint (True when there is none)."""
    return all(check_constraints(answer, constraints).values())


def strip_decoration(answer: str, constraints: Sequence[Constraint]) -> str:
    """The answer without the decoration of the given constraints (what helpfulness is judged on)."""
    kinds = _by_kind(constraints)
    text = answer.strip()
    if "persona" in kinds:
        text = _signature(kinds["persona"]["value"]).sub("", text)
    if "end_word" in kinds:
        text = _end_word(kinds["end_word"]["value"]).sub("", text)
    if "greeting" in kinds:
        text = _greeting(kinds["greeting"]["value"]).sub("", text, count=1)
    return text.strip()
