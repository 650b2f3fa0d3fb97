"""Every dataset of the world's bundle, generated deterministically from one seed.

Each dataset draws from its own `random.Random` derived from (seed, dataset name), so changing one
dataset's size leaves the others unchanged. `generate_all` returns plain rows that match the data
layer's schemas (pipelines/data/schemas.py) with per-dataset statistics.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.world.config import BundleConfig
from pipelines.world.dialogues import generate_eval_dialogues, generate_gatt, generate_sft
from pipelines.world.helpful import sample_helpful
from pipelines.world.pairs import make_pairs
from pipelines.world.pretrain_text import generate_pretrain
from pipelines.world.prompts import generate_eval_prompts, generate_rl_prompts
from pipelines.world.safety import sample_adversarial, sample_borderline
from pipelines.world.split import draw_in_split
from pipelines.world.tasks import Task


@dataclass(frozen=True)
class Dataset:
    """One generated dataset: its data-layer kind, its rows and what generation counted."""

    name: str  # file stem, e.g. "sft"
    kind: str  # data-layer kind: "text" | "prompts" | "dialogues" | "preferences"
    rows: list[dict]
    stats: dict


def dataset_rng(seed: int, name: str) -> random.Random:
    """The random stream of one dataset (string seeds hash deterministically: sha512)."""
    return random.Random(f"assistant-world:{seed}:{name}")


def generate_helpfulness_pairs(cfg: BundleConfig, rng: random.Random) -> tuple[list[dict], dict]:
    """Helpfulness comparisons on helpful train prompts."""
    def draw(r: random.Random) -> Task:
        return draw_in_split(sample_helpful, r, "train", cfg.eval_fraction)

    rows, stats = make_pairs(cfg.helpfulness_pairs, "helpfulness", draw, rng, cfg.annotator_noise, "hpair",
                             cfg.padded_pair_fraction, cfg.pair_balance_forms)
    return rows, stats.as_dict()


def generate_safety_pairs(cfg: BundleConfig, rng: random.Random) -> tuple[list[dict], dict]:
    """Safety comparisons on adversarial and borderline train prompts."""
    def draw(r: random.Random) -> Task:
        sampler = sample_adversarial if r.random() < cfg.safety_pair_adversarial_fraction else sample_borderline
        return draw_in_split(sampler, r, "train", cfg.eval_fraction)

    rows, stats = make_pairs(cfg.safety_pairs, "safety", draw, rng, cfg.annotator_noise, "spair")
    return rows, stats.as_dict()


# name -> (data-layer kind, generator)
GENERATORS: dict[str, tuple[str, Callable[[BundleConfig, random.Random], tuple[list[dict], dict]]]] = {
    "pretrain": ("text", lambda cfg, rng: generate_pretrain(cfg.pretrain_docs, rng, cfg.eval_fraction)),
    "sft": ("dialogues", generate_sft),
    "helpfulness_pairs": ("preferences", generate_helpfulness_pairs),
    "safety_pairs": ("preferences", generate_safety_pairs),
    "rl_prompts": ("prompts", generate_rl_prompts),
    "eval_prompts": ("prompts", generate_eval_prompts),
    "eval_dialogues": ("dialogues", generate_eval_dialogues),
    "gatt_dialogues": ("dialogues", generate_gatt),
}


def generate_dataset(name: str, cfg: BundleConfig, seed: int) -> Dataset:
    """One dataset of the bundle by name (GENERATORS lists them)."""
    if name not in GENERATORS:
        raise KeyError(f"unknown world dataset {name!r}; expected one of {list(GENERATORS)}")
    kind, generate = GENERATORS[name]
    rows, stats = generate(cfg, dataset_rng(seed, name))
    return Dataset(name, kind, rows, stats)


def generate_all(cfg: BundleConfig, seed: int) -> dict[str, Dataset]:
    """Every dataset of the bundle."""
    return {name: generate_dataset(name, cfg, seed) for name in GENERATORS}
