"""The reward role: a Ray actor holding one scorer chosen by config (DESIGN.md "Roles").

The actor is a plain class; `start_reward_actor` wraps it with `ray.remote` and the resources of
`RewardConfig` (as actors/group.py does for learners). Switching between a learned RM, the Llama 2
helpfulness+safety pair, a rule function or an HTTP service changes only `RewardConfig.scorer`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import ray
import torch
from ray.actor import ActorHandle

from actors.config import RewardConfig, ScorerConfig
from actors.scorers import ScoreRequest, build_scorer

__all__ = ["RewardActor", "ScoreRequest", "start_reward_actor"]

log = logging.getLogger(__name__)


class RewardActor:
    """Scores (prompt, response) pairs: `score(requests) -> {"reward": [N], ...}`."""

    def __init__(self, cfg: ScorerConfig, torch_threads: int = 1) -> None:
        torch.set_num_threads(max(1, torch_threads))
        self.kind = cfg.kind
        self.scorer = build_scorer(cfg)
        log.info("reward actor ready: scorer kind %s", cfg.kind)

    def score(self, requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]:
        if not requests:
            return {"reward": np.zeros(0, dtype=np.float64)}
        out = self.scorer.score(list(requests))
        for name, values in out.items():
            if values.shape != (len(requests),):
                raise ValueError(f"scorer {self.kind}: output {name!r} has shape {values.shape}, "
                                 f"expected ({len(requests)},)")
        return out

    def scorer_kind(self) -> str:
        return self.kind

    def torch_threads(self) -> int:
        """The intra-op threads this actor scores with."""
        return torch.get_num_threads()


def start_reward_actor(cfg: RewardConfig, name: str | None = None) -> ActorHandle:
    """A `RewardActor` with `cfg.num_cpus` / `cfg.num_gpus`; its torch threads are `cfg.torch_threads`, or
    follow its CPU share when that is 0."""
    if cfg.torch_threads < 0:
        raise ValueError(f"reward.torch_threads must be >= 0 (0 follows reward.num_cpus), got {cfg.torch_threads}")
    threads = cfg.torch_threads or max(1, math.floor(cfg.num_cpus))
    remote_cls = ray.remote(RewardActor)
    options = {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus}
    if name:
        options["name"] = name
    return remote_cls.options(**options).remote(cfg.scorer, threads)
