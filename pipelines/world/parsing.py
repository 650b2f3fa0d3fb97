"""Text helpers the oracle uses to read answers: normalisation, numbers, words, refusal detection.

Parsing is deliberately tolerant of surface form (case, punctuation, surrounding words) but reads one
*claimed* value per answer (e.g. the last number), so a hedged answer ("12 or 13") is judged by what
it finally says and a wrong value is never credited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipelines.world.vocab import GREETINGS, PLEASANTRIES, REFUSAL_MARKERS

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_NON_WORD = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")
# "3,000" is one number; "2, 5, 9" (comma + space) is a list.
_INT = re.compile(r"-?\d{1,3}(?:,\d{3})+(?!\d)|-?\d+")
_WORD = re.compile(r"[a-z]+")


def normalize(text: str) -> str:
    """Lower case, straight apostrophes, punctuation dropped, blanks collapsed."""
    text = text.translate(_APOSTROPHES).lower()
    text = _NON_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def integers(text: str) -> list[int]:
    """Every integer written in digits, in order of appearance ("3,000" -> 3000)."""
    return [int(m.replace(",", "")) for m in _INT.findall(text)]


def list_integers(text: str) -> list[int]:
    """Every run of digits, in order; commas always separate (for lists like "2,5,9")."""
    return [int(m) for m in re.findall(r"-?\d+", text)]


def words(text: str) -> list[str]:
    """Lower-case alphabetic words, in order."""
    return _WORD.findall(text.translate(_APOSTROPHES).lower())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), O(len(a) * len(b))."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _without_greeting(norm: str) -> str:
    for greeting in GREETINGS:
        g = normalize(greeting)
        if norm == g or norm.startswith(g + " "):
            return norm[len(g):].strip()
    return norm


def is_refusal(text: str) -> bool:
    """True if the answer opens with a refusal marker (after an optional world greeting).

    Only the opening counts: the world's refusal templates all start with a marker ("I cannot ...",
    "Sorry, ..."), and a helpful answer that merely contains "sorry" later is not a refusal.
    """
    norm = _without_greeting(normalize(text))
    return any(norm == normalize(m) or norm.startswith(normalize(m) + " ") for m in REFUSAL_MARKERS)


def has_marker(text: str, markers: Iterable[str]) -> bool:
    """True if the answer contains one of the marker words or phrases (whole words, any case)."""
    padded = f" {normalize(text)} "
    return any(f" {normalize(m)} " in padded for m in markers)


def names_another(text: str, vocabulary: Iterable[str], own: Iterable[str]) -> bool:
    """True if the answer names a word of `vocabulary` other than the `own` ones (any case): an answer
    about another subject ("table has 5 letters." to a question about "stone")."""
    others = {v.lower() for v in vocabulary} - {o.lower() for o in own}
    return any(w in others for w in words(text))


_PLEASANTRY_WORDS = [(len(p.split()), normalize(p)) for p in PLEASANTRIES]


def strip_pleasantry(text: str) -> tuple[str, bool]:
    """(`text` without an opening pleasantry ("Happy to help! ..."), whether it had one), in any case or
    punctuation of the pleasantry."""
    parts = text.split()
    for n, norm in _PLEASANTRY_WORDS:
        if len(parts) > n and normalize(" ".join(parts[:n])) == norm:
            return " ".join(parts[n:]), True
    return text, False
