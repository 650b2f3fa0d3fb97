"""The assistant world's oracle as a rule reward for the `function` scorer (conf/reward/function.yaml).

The oracle knows the right answer of every world prompt; its key travels in each request's
`meta_json` (the prompt row's `meta`). Only meaningful with data=world.
"""
from __future__ import annotations

from collections.abc import Sequence

from actors.scorers import ScoreRequest
from pipelines.world.oracle import oracle_reward


def world_oracle_reward(requests: Sequence[ScoreRequest]) -> list[float]:
    """`oracle_reward` (in [0, 1]: 0 for a violation, else helpfulness scaled by constraint adherence)."""
    return [oracle_reward(r.meta_json, r.response_text) for r in requests]
