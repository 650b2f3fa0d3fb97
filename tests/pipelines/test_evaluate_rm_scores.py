"""The evaluate stage's RM scoring (pipelines.stages.evaluate.rm_scores) on a real reward actor."""
from __future__ import annotations

import os

import pytest
import ray

from actors.config import RewardConfig, ScorerConfig
from actors.reward import start_reward_actor
from pipelines.common import Completion
from pipelines.stages import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def ray_env():
    started = not ray.is_initialized()
    if started:  # workers import tests.actors.reward_rules from the repository root
        ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    yield
    if started:
        ray.shutdown()


def _actor(target: str):
    return start_reward_actor(RewardConfig(scorer=ScorerConfig(kind="function", target=f"tests.actors.reward_rules:{target}")))


def test_each_distinct_answer_is_scored_once_and_every_checkpoint_gets_its_own(ray_env):
    rows = [{"messages": [{"role": "user", "content": "q1"}], "is_safety": False, "meta": "{}"},
            {"messages": [{"role": "user", "content": "q2"}], "is_safety": True, "meta": "{}"}]

    def answers(*texts):
        return [[Completion(i, 0, [1, 2 + i], [10 + len(t)], [0.0], t, 0)] for i, t in enumerate(texts)]

    by_name = {"a": answers("x", "yy"), "b": answers("x", "zzz"), "c": answers("x", "yy")}
    counter, length = _actor("batch_size_reward"), _actor("length_reward")
    try:
        sent = evaluate.rm_scores(counter, rows, by_name)
        # 6 answers, 3 distinct: ("q1", "x") three times, ("q2", "yy") twice, ("q2", "zzz") once
        assert {n: s["reward"].tolist() for n, s in sent.items()} == {n: [3.0, 3.0] for n in by_name}
        scored = evaluate.rm_scores(length, rows, by_name)  # 0.1 x characters, minus 1 on the safety prompt
        assert scored["a"]["reward"] == pytest.approx([0.1, -0.8])
        assert scored["b"]["reward"] == pytest.approx([0.1, -0.7])
        assert scored["c"]["reward"] == pytest.approx([0.1, -0.8])
    finally:
        ray.kill(counter)
        ray.kill(length)
