"""Reward scorers, chosen by config (`reward=...`; DESIGN.md "Roles").

A scorer is any object with `score(requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]`
returning at least "reward" (one float per request) and, where defined, "helpfulness" / "safety"
(sigmoid scores in [0, 1]). Kinds:

- learned:  one reward model checkpoint (ScalarModel); reward = raw scalar r at the last token of
            prompt + response, "score" = sigmoid(r) (LLAMA2_SPEC.md section 6).
- llama2:   helpfulness + safety RMs combined piecewise (section 8): "combined" = Rc in [0, 1],
            "reward" = logit(Rc). Whitening is NOT applied here: it needs the statistics of the
            whole PPO batch, so the PPO driver whitens "reward" over each iteration's rollouts.
- function: a Python callable `fn(requests: list[ScoreRequest], **extra) -> list[float]`.
- http:     a remote service (actors/http_scorer.py, protocol in docs/reward_http.md).
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
import torch

from actors.config import ScorerConfig
from actors.http_scorer import HttpScorer, RewardServiceError
from algorithms.llama2_reward import combine_safety_helpfulness, logit

__all__ = [
    "ScoreRequest", "Scorer", "ScorerError", "RewardServiceError", "LearnedScorer", "Llama2PairScorer",
    "FunctionScorer", "HttpScorer", "SCORERS", "SCORER_KINDS", "build_scorer", "resolve_function",
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


def _require_requests(where: str, requests: Sequence[ScoreRequest]) -> None:
    for i, r in enumerate(requests):
        if not isinstance(r, ScoreRequest):
            raise ScorerError(f"{where}: request {i} is a {type(r).__name__}, expected actors.scorers.ScoreRequest")


# ------------------------------------------------------------------------------------------------
# learned reward models
# ------------------------------------------------------------------------------------------------


class LearnedScorer:
    """A ScalarModel checkpoint; reward = r(prompt + response) at the last token."""

    def __init__(self, path: str, batch_size: int = 32, device: str | None = None) -> None:
        from model import ScalarModel, load_pretrained

        if not path:
            raise ScorerError("LearnedScorer: empty checkpoint path (set reward.scorer.path)")
        if batch_size < 1:
            raise ScorerError(f"LearnedScorer: batch_size must be >= 1, got {batch_size}")
        model = load_pretrained(path)
        if not isinstance(model, ScalarModel):
            raise ScorerError(f"{path}: holds a {type(model).__name__}; a reward model checkpoint must be a "
                              "ScalarModel (config.json architectures: LlamaForSequenceClassification)")
        self.path = path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.max_len = model.args.max_seq_len
        self.vocab_size = model.args.vocab_size
        self.batch_size = batch_size

    @torch.inference_mode()
    def raw(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        """r at the last token of each prompt + response, as float64 [N]."""
        _require_requests("LearnedScorer", requests)
        seqs = [list(r.prompt_tokens) + list(r.response_tokens) for r in requests]
        for i, s in enumerate(seqs):
            if not s:
                raise ScorerError(f"LearnedScorer({self.path}): request {i} has no tokens")
            if len(s) > self.max_len:
                raise ScorerError(f"LearnedScorer({self.path}): request {i} has {len(s)} tokens, more than the "
                                  f"model's max_seq_len={self.max_len}")
            if min(s) < 0 or max(s) >= self.vocab_size:
                raise ScorerError(f"LearnedScorer({self.path}): request {i} has token ids outside "
                                  f"[0, vocab_size={self.vocab_size})")
        out = np.empty(len(seqs), dtype=np.float64)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths share a batch: less padding
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            out[idx] = self._forward([seqs[i] for i in idx])
        return out

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        # Right padding: with causal attention the real tokens never see the pads, so the value at
        # each row's last real token equals the unpadded forward.
        T = max(len(s) for s in seqs)
        tokens = torch.zeros((len(seqs), T), dtype=torch.long)  # [B, T]
        for b, s in enumerate(seqs):
            tokens[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        last = torch.tensor([len(s) - 1 for s in seqs])  # [B]
        values = self.model(tokens.to(self.device)).float().cpu()  # [B, T]
        return values[torch.arange(len(seqs)), last].double().numpy()  # [B]

    def score(self, requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]:
        r = self.raw(requests)
        return {"reward": r, "score": 1.0 / (1.0 + np.exp(-r))}


class Llama2PairScorer:
    """Helpfulness + safety RMs with the paper's piecewise rule (section 3.2.3, eq. for Rc)."""

    def __init__(self, helpfulness_path: str, safety_path: str, threshold: float = 0.15, batch_size: int = 32) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ScorerError(f"Llama2PairScorer: threshold must be in [0, 1], got {threshold}")
        self.helpfulness = LearnedScorer(helpfulness_path, batch_size)
        self.safety = LearnedScorer(safety_path, batch_size)
        self.threshold = threshold

    def score(self, requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]:
        rh = torch.from_numpy(self.helpfulness.raw(requests))  # [N]
        rs = torch.from_numpy(self.safety.raw(requests))  # [N]
        h, s = torch.sigmoid(rh), torch.sigmoid(rs)
        is_safety = torch.tensor([bool(r.is_safety) for r in requests], dtype=torch.bool)  # [N]
        rc = combine_safety_helpfulness(s, h, is_safety, self.threshold)  # [N]
        return {
            "reward": logit(rc).numpy(),  # whitened over the batch by the PPO driver, not here
            "combined": rc.numpy(),
            "helpfulness": h.numpy(),
            "safety": s.numpy(),
            "helpfulness_raw": rh.numpy(),
            "safety_raw": rs.numpy(),
        }


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
        _require_requests(f"FunctionScorer({self.target})", requests)
        values = self.fn(list(requests), **self.extra)
        return {"reward": check_rewards(f"reward function {self.target}", values, len(requests))}


# ------------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------------


SCORERS: dict[str, Callable[[ScorerConfig], Scorer]] = {
    "learned": lambda c: LearnedScorer(c.path, c.batch_size),
    "llama2": lambda c: Llama2PairScorer(c.helpfulness_path, c.safety_path, c.safety_threshold, c.batch_size),
    "function": lambda c: FunctionScorer(c.target, c.extra),
    "http": lambda c: HttpScorer(c.url, c.timeout_s, c.retries, c.batch_size),
}
SCORER_KINDS: tuple[str, ...] = tuple(SCORERS)


def build_scorer(cfg: ScorerConfig) -> Scorer:
    """The scorer of `cfg.kind` (reward.scorer.kind in the Hydra config)."""
    if cfg.kind not in SCORERS:
        raise ScorerError(f"reward.scorer.kind: unknown scorer kind {cfg.kind!r}; expected one of {list(SCORER_KINDS)}")
    return SCORERS[cfg.kind](cfg)
