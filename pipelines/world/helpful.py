"""The registry of helpful task families (DESIGN.md "The built-in task")."""

from __future__ import annotations

import random

from pipelines.world.helpful_numbers import ARITHMETIC, COUNT_LETTERS, SORT_NUMBERS, UNIT_CONVERSION
from pipelines.world.helpful_words import FACT_LOOKUP, REVERSE_WORD
from pipelines.world.tasks import Family, Task

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (ARITHMETIC, COUNT_LETTERS, SORT_NUMBERS, UNIT_CONVERSION, REVERSE_WORD, FACT_LOOKUP)
}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def family(name: str) -> Family:
    """The family called `name`; an unknown name is an error listing the known ones."""
    if name not in FAMILIES:
        raise KeyError(f"unknown helpful task family {name!r}; expected one of {list(FAMILIES)}")
    return FAMILIES[name]


def sample_helpful(rng: random.Random, name: str | None = None) -> Task:
    """A helpful task from family `name`, or from a uniformly drawn family."""
    return family(name or rng.choice(FAMILY_NAMES)).sample(rng)
