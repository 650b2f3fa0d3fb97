"""Rollout generation: one in-process vLLM engine per Ray actor, and a pool that spreads prompts.

ENVIRONMENT.md: the in-process engine (VLLM_ENABLE_V1_MULTIPROCESSING=0, executor "uni",
enforce_eager) starts in ~2 s on CPU and runs inside a Ray actor; new weights are loaded in place by
the worker extension in actors/vllm_ext.py. Log-probs are vLLM's default "raw" ones: log-softmax of
the model's logits before temperature/top-p, i.e. log pi_theta(token), the quantity PPO needs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import ray
import torch
from safetensors import safe_open

from actors.batch import Sample
from actors.config import GeneratorConfig, ResourceConfig, SamplingConfig
from actors.group import ActorGroup, RankContext, setup_rank

__all__ = ["Generator", "GeneratorPool", "EOS_ID", "contiguous_shards"]

log = logging.getLogger(__name__)

EOS_ID = 2  # Llama 2's </s> (LLAMA2_SPEC.md section 2)
EXTENSION = "actors.vllm_ext.WeightReloadExtension"


def _checkpoint_shapes(model_path: str) -> dict[str, tuple[int, ...]]:
    """HF tensor names and shapes of the checkpoint the engine starts from (what a sync must provide)."""
    files = sorted(Path(model_path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"generator checkpoint {model_path} has no *.safetensors file")
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            shapes |= {k: tuple(st.get_slice(k).get_shape()) for k in st.keys()}
    return shapes


def _check_prompts(prompts: list[list[int]], vocab: int, max_model_len: int, offset: int) -> None:
    """Errors name the prompt's index in the caller's list (offset = where this engine's shard starts)."""
    if not isinstance(prompts, list):
        raise ValueError(f"generate: expected a list of token-id lists, got {type(prompts).__name__}")
    for i, p in enumerate(prompts, start=offset):
        if not isinstance(p, list) or not p:
            raise ValueError(f"generate: prompt {i} must be a non-empty list of token ids, got {p!r:.80}")
        if len(p) >= max_model_len:
            raise ValueError(f"generate: prompt {i} has {len(p)} tokens; max_model_len is {max_model_len}")
        bad = [t for t in p if not isinstance(t, int) or not 0 <= t < vocab]
        if bad:
            raise ValueError(f"generate: prompt {i} has token ids outside [0, {vocab}): {bad[:5]}")


class Generator:
    """One vLLM engine. `generate` returns K samples per prompt with the sampled tokens' log-probs."""

    def __init__(self, model_path: str, cfg: GeneratorConfig, ctx: RankContext) -> None:
        setup_rank(ctx)
        # The engine must live in this process (no engine-core subprocess) for in-place reloads and
        # to pass tensors through collective_rpc unchanged (ENVIRONMENT.md).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM

        t0 = time.perf_counter()
        self.cfg = cfg
        self.expected = _checkpoint_shapes(model_path)
        # An explicit KV-cache size when given: on CPU a utilisation fraction is measured against
        # node memory minus this process's RSS and fails in busy processes (actors/config.py).
        memory = ({"kv_cache_memory_bytes": cfg.kv_cache_bytes} if cfg.kv_cache_bytes > 0
                  else {"gpu_memory_utilization": cfg.gpu_memory_utilization})
        if cfg.num_gpus == 0:  # see GeneratorConfig.max_num_batched_tokens
            memory.update(enable_chunked_prefill=False,
                          max_num_batched_tokens=max(cfg.max_num_batched_tokens, cfg.max_model_len))
        self.llm = LLM(
            model=model_path, skip_tokenizer_init=True, dtype=cfg.dtype, max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager, distributed_executor_backend="uni", seed=cfg.seed + ctx.rank,
            worker_extension_cls=EXTENSION, **memory,
        )
        self.vocab = self.llm.llm_engine.model_config.get_vocab_size()
        self.version = 0
        log.info("generator %d: engine for %s ready in %.1fs", ctx.rank, model_path, time.perf_counter() - t0)

    def generate(
        self, prompt_token_ids: list[list[int]], sampling: SamplingConfig, seed: int | None = None,
        index_offset: int = 0,
    ) -> list[Sample]:
        """sampling.n samples per prompt, in prompt order. Prompt i is numbered index_offset + i and,
        with a seed, sampled with seed + (index_offset + i) * n: results do not depend on the sharding."""
        from vllm import SamplingParams, TokensPrompt

        _check_prompts(prompt_token_ids, self.vocab, self.cfg.max_model_len, index_offset)
        if sampling.temperature == 0 and sampling.n != 1:
            raise ValueError(
                f"generate: temperature 0 (greedy) with n={sampling.n}; greedy samples are identical, use n=1"
            )
        params = [
            SamplingParams(
                n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                max_tokens=sampling.max_tokens, logprobs=0, stop_token_ids=[EOS_ID],
                seed=None if seed is None else seed + (index_offset + i) * sampling.n,
            )
            for i in range(len(prompt_token_ids))
        ]
        prompts = [TokensPrompt(prompt_token_ids=p) for p in prompt_token_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [self._sample(index_offset + i, c) for i, out in enumerate(outputs) for c in out.outputs]

    def _sample(self, prompt_index: int, completion: Any) -> Sample:
        tokens = list(completion.token_ids)
        # logprobs=0 returns, per step, a dict holding just the sampled token's log-prob.
        logprobs = [float(step[t].logprob) for step, t in zip(completion.logprobs, tokens)]
        return Sample(prompt_index=prompt_index, sample_index=completion.index, token_ids=tokens,
                      logprobs=logprobs, finish_reason=str(completion.finish_reason), weight_version=self.version)

    def load_weights(self, named_tensors: dict[str, torch.Tensor], version: int) -> int:
        """Reload all weights in place (HF names, the checkpoint's shapes); serve them as `version`."""
        shapes = {k: tuple(v.shape) for k, v in named_tensors.items()}
        if shapes.keys() != self.expected.keys():
            missing, extra = sorted(self.expected.keys() - shapes.keys()), sorted(shapes.keys() - self.expected.keys())
            raise ValueError(
                f"load_weights: tensor names differ from the checkpoint: missing {missing[:5]}, unexpected {extra[:5]}"
            )
        wrong = [k for k in shapes if shapes[k] != self.expected[k]]
        if wrong:
            k = wrong[0]
            raise ValueError(f"load_weights: {k} has shape {shapes[k]}, the engine's checkpoint has {self.expected[k]}")
        self.llm.collective_rpc("reload_from_tensors", args=(named_tensors,))
        # Cached prefix KV blocks were computed with the old weights.
        self.llm.reset_prefix_cache()
        self.version = version
        return version

    def weight_version(self) -> int:
        return self.version


def contiguous_shards(n_items: int, n_shards: int) -> list[tuple[int, int]]:
    """[start, end) ranges of near-equal contiguous shards, in order (the first ones one larger)."""
    base, extra = divmod(n_items, n_shards)
    bounds, start = [], 0
    for s in range(n_shards):
        end = start + base + (1 if s < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


class GeneratorPool:
    """`cfg.num_engines` Generator actors; prompts are split into contiguous shards, order preserved."""

    def __init__(self, cfg: GeneratorConfig, model_path: str, name: str = "generators",
                 ready_timeout_s: float = 180.0) -> None:
        if cfg.num_engines < 1:
            raise ValueError(f"GeneratorConfig.num_engines must be >= 1, got {cfg.num_engines}")
        if cfg.torch_threads < 0:
            raise ValueError(f"GeneratorConfig.torch_threads must be >= 0 (0 follows num_cpus), got {cfg.torch_threads}")
        threads = cfg.torch_threads or max(1, int(cfg.num_cpus))
        resources = ResourceConfig(num_workers=cfg.num_engines, num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus,
                                   strategy="PACK", torch_threads=threads)
        self.group = ActorGroup(Generator, resources, init_args=(model_path, cfg), name=name,
                                backend=None, ready_timeout_s=ready_timeout_s)

    @property
    def num_engines(self) -> int:
        return self.group.world_size

    def generate(self, prompt_token_ids: list[list[int]], sampling: SamplingConfig,
                 seed: int | None = None) -> list[Sample]:
        """All samples, prompt-major (prompt 0's n samples first); one ray.get for the phase."""
        refs = [
            actor.generate.remote(prompt_token_ids[a:b], sampling, seed, a)
            for actor, (a, b) in zip(self.group.actors, contiguous_shards(len(prompt_token_ids), self.num_engines))
            if b > a
        ]
        return [s for shard in ray.get(refs) for s in shard]

    def sync_weights(self, named_tensors: ray.ObjectRef | dict[str, torch.Tensor], version: int) -> None:
        """Every engine loads the same object-store copy of the weights (put once if given a dict)."""
        ref = named_tensors if isinstance(named_tensors, ray.ObjectRef) else ray.put(named_tensors)
        ray.get(self.group.call("load_weights", ref, version))

    def weight_versions(self) -> list[int]:
        return self.group.run("weight_version")

    def shutdown(self) -> None:
        self.group.shutdown()
