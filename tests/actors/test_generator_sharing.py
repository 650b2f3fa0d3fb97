"""One vLLM pool across the stages of a pipeline run (`pipelines.common.shared_generators`).

A stage that gets the kept pool must see exactly what a new pool on its checkpoint would give it
(greedy answers equal, weight version 0), the engines must stop when the block ends, and a pool whose
engine died must be replaced rather than handed on.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import ray
import torch

from actors.config import GeneratorConfig, SamplingConfig
from model import ModelArgs, Transformer, save_pretrained
from pipelines import common
from pipelines.config import Config

ARGS = ModelArgs(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=128, multiple_of=32, max_seq_len=128)
PROMPTS = [[1, 5, 6, 7, 8], [1, 9], [1, 20, 21, 22]]
GREEDY = SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_tokens=12)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[str, str]:
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path_factory.mktemp("share") / f"lm{seed}"
        save_pretrained(Transformer(ARGS), path)
        out.append(str(path))
    return out[0], out[1]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Config:
    c = Config(run_dir=str(tmp_path_factory.mktemp("run")))
    c.model = replace(c.model, max_seq_len=128)
    c.resources = replace(c.resources, generator=GeneratorConfig(
        num_engines=1, num_cpus=0.25, max_model_len=128, kv_cache_bytes=16 * 1024 * 1024))
    return c


def _answers(pool) -> list[list[int]]:
    return [s.token_ids for s in pool.generate(PROMPTS, GREEDY, seed=0)]


def _actor_ids(pool) -> list[str]:
    return [a._actor_id.hex() for a in pool.group.actors]


def test_kept_pool_serves_the_next_stage_checkpoint_exactly(ray_cluster, cfg, checkpoints):
    first, second = checkpoints
    fresh = common.generator_pool(cfg, second)  # outside the block: a pool of its own
    try:
        expected = _answers(fresh)
    finally:
        fresh.shutdown()
    with common.shared_generators():
        a = common.generator_pool(cfg, first)
        ids = _actor_ids(a)
        first_answers = _answers(a)
        a.shutdown()  # a stage's finally: the engines stay up
        b = common.generator_pool(cfg, second)
        assert _actor_ids(b) == ids  # the same engine, not a new one
        assert b.weight_versions() == [0]  # as a new pool would report
        assert _answers(b) == expected
        assert first_answers != expected  # the two checkpoints differ, so the reload did something
        b.shutdown()
        handle = b.group.actors[0]
    with pytest.raises(ray.exceptions.RayActorError):  # the block's end stopped it
        ray.get(handle.weight_version.remote(), timeout=60)


def test_a_dead_kept_engine_is_replaced(ray_cluster, cfg, checkpoints):
    first, second = checkpoints
    with common.shared_generators():
        a = common.generator_pool(cfg, first)
        ids = _actor_ids(a)
        ray.kill(a.group.actors[0])
        b = common.generator_pool(cfg, second)
        assert _actor_ids(b) != ids
        assert len(_answers(b)) == len(PROMPTS)


def test_another_generator_config_gets_its_own_pool(ray_cluster, cfg, checkpoints):
    first, _ = checkpoints
    with common.shared_generators():
        a = common.generator_pool(cfg, first)
        ids, handle = _actor_ids(a), a.group.actors[0]
        b = common.generator_pool(cfg, first, seed_offset=17)  # another engine seed: not interchangeable
        assert _actor_ids(b) != ids
        with pytest.raises(ray.exceptions.RayActorError):  # the replaced pool was stopped
            ray.get(handle.weight_version.remote(), timeout=60)
