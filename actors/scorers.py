"""Reward scorers, chosen by config (`reward=...`; DESIGN.md "Roles").

A scorer is any object with `score(requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]`
returning at least "reward" (one float per request) and, where defined, "helpfulness" / "safety"
(sigmoid scores in [0, 1]). Kinds:

- learned:  one reward model checkpoint (actors/learned_scorer.py).
- llama2:   helpfulness + safety RMs combined piecewise (actors/learned_scorer.py); "reward" is
            logit(Rc), unwhitened: the PPO driver whitens it over each iteration's rollouts.
- function: a Python callable `fn(requests: list[ScoreRequest], **extra) -> list[float]` (here).
- http:     a remote service (actors/http_scorer.py, protocol in docs/reward_http.md).

Scorer modules are imported only when a scorer of their kind is built.
"""
from __future__ import annotations

import importlib
import json
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from actors.config import ScorerConfig

__all__ = [
    "ScoreRequest", "Scorer", "ScorerError", "FunctionScorer", "SCORERS", "SCORER_KINDS", "build_scorer",
    "resolve_function", "check_rewards",
]


class ScorerError(ValueError):
    """A scorer cannot be built or received / produced data of the wrong form."""


@dataclass(frozen=True)
class ScoreRequest:
    """One (prompt, response) to score. Token ids feed reward models; texts feed functions and services.

    prompt_messages: the chat prompt ([{"role", "content"}, ...], ending with the user turn).
    meta_json: the prompt row's JSON metadata (e.g. the world's task family and answer), "{}" if none.
    """

    prompt_tokens: list[int]
    response_tokens: list[int]
    prompt_messages: list[dict[str, str]] = field(default_factory=list)
    response_text: str = ""
    is_safety: bool = False
    meta_json: str = "{}"

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "response_tokens"):
            ids = getattr(self, name)
            if not isinstance(ids, (list, tuple)) or not all(isinstance(t, numbers.Integral) for t in ids):
                raise ScorerError(f"ScoreRequest.{name}: expected a list of int token ids, got {ids!r:.80}")
        if not isinstance(self.prompt_messages, (list, tuple)) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in self.prompt_messages
        ):
            raise ScorerError(f"ScoreRequest.prompt_messages: expected [{{'role', 'content'}}, ...], "
                              f"got {self.prompt_messages!r:.80}")
        if not isinstance(self.response_text, str):
            raise ScorerError(f"ScoreRequest.response_text: expected str, got {type(self.response_text).__name__}")
        if not isinstance(self.is_safety, (bool, np.bool_)):
            raise ScorerError(f"ScoreRequest.is_safety: expected bool, got {self.is_safety!r}")
        if not isinstance(self.meta_json, str):
            raise ScorerError(f"ScoreRequest.meta_json: expected a JSON string, got {type(self.meta_json).__name__}")

    @property
    def meta(self) -> dict[str, Any]:
        try:
            value = json.loads(self.meta_json)
        except json.JSONDecodeError as e:
            raise ScorerError(f"ScoreRequest.meta_json is not valid JSON ({e}): {self.meta_json!r:.80}") from e
        if not isinstance(value, dict):
            raise ScorerError(f"ScoreRequest.meta_json must hold a JSON object, got {self.meta_json!r:.80}")
        return value


class Scorer(Protocol):
    def score(self, requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]: ...


def require_requests(where: str, requests: Sequence[ScoreRequest]) -> None:
    for i, r in enumerate(requests):
        if not isinstance(r, ScoreRequest):
            raise ScorerError(f"{where}: request {i} is a {type(r).__name__}, expected actors.scorers.ScoreRequest")


# ------------------------------------------------------------------------------------------------
# rule / oracle functions
# ------------------------------------------------------------------------------------------------


def resolve_function(target: str) -> Callable[..., Any]:
    """Import `pkg.module:fn` or `pkg.module.fn` and return the callable."""
    if not isinstance(target, str) or not target.strip():
        raise ValueError("reward function target is empty; expected 'pkg.module:fn' or 'pkg.module.fn'")
    if ":" in target:
        module_name, _, attr = target.partition(":")
    else:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"reward function target {target!r}: expected 'pkg.module:fn' or 'pkg.module.fn'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"reward function target {target!r}: cannot import module {module_name!r} ({e})") from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"reward function target {target!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"reward function target {target!r} is a {type(obj).__name__}, not a callable")
    return obj


def check_rewards(where: str, values: Any, n: int) -> np.ndarray:
    """`values` as float64 [n]: a list/tuple/1-D array of n finite real numbers, else a clear error."""
    if isinstance(values, np.ndarray):
        values = values.tolist() if values.ndim == 1 else values
    if not isinstance(values, (list, tuple)):
        raise ScorerError(f"{where}: returned a {type(values).__name__}; expected a list of {n} floats")
    if len(values) != n:
        raise ScorerError(f"{where}: returned {len(values)} rewards for {n} requests")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ScorerError(f"{where}: reward {i} is {v!r}; expected a finite number")
    return np.asarray(values, dtype=np.float64)


class FunctionScorer:
    """A rule or oracle reward: `fn(requests, **extra) -> list[float]`, one reward per request."""

    def __init__(self, target: str, extra: dict[str, Any] | None = None) -> None:
        try:
            self.fn = resolve_function(target)
        except (ImportError, AttributeError, TypeError, ValueError) as e:
            raise ScorerError(str(e)) from e
        self.target = target
        self.extra = dict(extra or {})

    def score(self, requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]:
        require_requests(f"FunctionScorer({self.target})", requests)
        values = self.fn(list(requests), **self.extra)
        return {"reward": check_rewards(f"reward function {self.target}", values, len(requests))}


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------


def _learned(c: ScorerConfig) -> Scorer:
    from actors.learned_scorer import LearnedScorer

    return LearnedScorer(c.path, c.batch_size, autocast_bf16=c.autocast_bf16)


def _llama2(c: ScorerConfig) -> Scorer:
    from actors.learned_scorer import Llama2PairScorer

    return Llama2PairScorer(c.helpfulness_path, c.safety_path, c.safety_threshold, c.batch_size,
                            autocast_bf16=c.autocast_bf16)


def _http(c: ScorerConfig) -> Scorer:
    from actors.http_scorer import HttpScorer

    return HttpScorer(c.url, c.timeout_s, c.retries, c.batch_size)


SCORERS: dict[str, Callable[[ScorerConfig], Scorer]] = {
    "learned": _learned,
    "llama2": _llama2,
    "function": lambda c: FunctionScorer(c.target, c.extra),
    "http": _http,
}
SCORER_KINDS: tuple[str, ...] = tuple(SCORERS)


def build_scorer(cfg: ScorerConfig) -> Scorer:
    """The scorer of `cfg.kind` (reward.scorer.kind in the Hydra config)."""
    if cfg.kind not in SCORERS:
        raise ScorerError(f"reward.scorer.kind: unknown scorer kind {cfg.kind!r}; expected one of {list(SCORER_KINDS)}")
    return SCORERS[cfg.kind](cfg)
