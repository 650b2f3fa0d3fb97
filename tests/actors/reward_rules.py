"""Rule reward functions for tests/actors/test_reward.py, importable by Ray workers by module path
(`tests.actors.reward_rules:...`; the session fixture puts the repository root on their PYTHONPATH)."""
from __future__ import annotations

from actors.scorers import ScoreRequest


def length_reward(requests: list[ScoreRequest], scale: float = 0.1) -> list[float]:
    """scale x characters of the answer, minus 1 on safety prompts, plus the meta's bonus."""
    return [scale * len(r.response_text) - float(r.is_safety) + r.meta.get("bonus", 0.0) for r in requests]


def one_too_few(requests: list[ScoreRequest]) -> list[float]:
    return [0.0] * (len(requests) - 1)


def not_numbers(requests: list[ScoreRequest]) -> list[object]:
    return ["high"] * len(requests)


NOT_CALLABLE = 3


def batch_size_reward(requests: list[ScoreRequest]) -> list[float]:
    """How many requests came in the call, for every request (shows what a caller batched)."""
    return [float(len(requests))] * len(requests)
