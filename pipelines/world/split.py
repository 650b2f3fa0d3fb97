"""The train/eval split of task instances: a deterministic function of the instance itself.

An instance is a user message with its answer key. Its split is decided by a hash of the normalised
message (without its opener) and the key, so the same instance lands in the same split whichever
generator, seed or dataset draws it: no evaluation prompt can appear in any training set (SFT, preference pairs, RL
prompts, GAtt dialogues). Generators draw instances and keep only those of the split they build.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable

from pipelines.world.parsing import normalize
from pipelines.world.tasks import Task, strip_opener

DEFAULT_EVAL_FRACTION = 0.2
_MAX_DRAWS = 10_000


def instance_text(task: Task) -> str:
    """The request that identifies an instance: normalised, without its opener ("Hi! ", ...).

    Openers are surface noise, so "Hi! What is 2 plus 5?" and "What is 2 plus 5?" are one instance
    and share a split; other phrasings (templates, suffixes) are instances of their own.
    """
    return normalize(strip_opener(task.user))


def instance_hash(task: Task) -> float:
    """A number in [0, 1) fixed by the instance's request text and answer key."""
    ident = instance_text(task) + "\n" + json.dumps(task.key, sort_keys=True)
    digest = hashlib.sha256(ident.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(task: Task, eval_fraction: float = DEFAULT_EVAL_FRACTION) -> str:
    """"eval" for a fixed `eval_fraction` of all instances, "train" for the rest."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    return "eval" if instance_hash(task) < eval_fraction else "train"


def draw_in_split(
    sample: Callable[[random.Random], Task], rng: random.Random, split: str, eval_fraction: float
) -> Task:
    """Draw from `sample` until the instance belongs to `split`."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    for _ in range(_MAX_DRAWS):
        task = sample(rng)
        if split_of(task, eval_fraction) == split:
            return task
    raise RuntimeError(f"no {split!r} instance in {_MAX_DRAWS} draws (eval_fraction={eval_fraction})")
