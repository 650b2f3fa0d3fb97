"""Plain dataclasses that actors receive (never the Hydra tree; STYLE.md habit 6).

The Hydra schema in `pipelines/config.py` nests these, so defaults live here once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ResourceConfig:
    """Resources of one actor group: `num_workers` ranks placed by a Ray placement group.

    Fractions (e.g. num_cpus=0.5) colocate roles on the same devices; `strategy` is a Ray placement
    strategy (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD).
    """

    num_workers: int = 1
    num_cpus: float = 0.5
    num_gpus: float = 0.0
    strategy: str = "PACK"
    torch_threads: int = 1  # intra-op threads per rank; the 2-core dev box wants 1


@dataclass
class OptimConfig:
    """AdamW + LR schedule (LLAMA2_SPEC.md sections 3-8)."""

    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-5
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    schedule: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # fraction of total steps; the larger of the two wins
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak


@dataclass
class LearnerConfig:
    """A trainable model held by a learner group (policy, critic, reward model)."""

    init_path: str = ""          # HF-format checkpoint directory to start from
    model_kind: str = "lm"       # lm (policy) | scalar (reward / value model)
    parallel: str = "ddp"        # ddp | fsdp
    backend: str = "auto"        # auto -> nccl with GPUs, gloo otherwise
    dtype: str = "float32"       # parameter dtype
    # torch.autocast bf16 for the forward pass: true | false | "auto" (on where the device has native
    # bf16 matmuls: CUDA with bf16, CPU with AVX512-BF16/AMX; model/precision.py)
    autocast_bf16: Any = False
    micro_batch_size: int = 8    # sequences per forward/backward on one rank
    optim: OptimConfig = field(default_factory=OptimConfig)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    seed: int = 0


@dataclass
class GeneratorConfig:
    """vLLM generator pool: one in-process engine per actor (ENVIRONMENT.md)."""

    num_engines: int = 1
    num_cpus: float = 0.5
    num_gpus: float = 0.0
    # intra-op threads of each engine; 0 follows its CPU share (floor(num_cpus), at least 1). The stages
    # generate while learners wait, so on the 2-core box an engine may use both cores: 1030 greedy eval
    # prompts took 8.2 s with 1 thread, 6.1 s with 2 (docs/benchmarks.md)
    torch_threads: int = 0
    max_model_len: int = 512
    gpu_memory_utilization: float = 0.05  # GPU: fraction of device memory; unused when kv_cache_bytes > 0
    # KV-cache size in bytes (vLLM `kv_cache_memory_bytes`). On CPU vLLM subtracts the process's RSS
    # from utilisation * node memory, so a fraction fails inside large processes: set bytes instead.
    # 256 MiB holds 131k tokens of the tiny model: 200 eval dialogues of 8 turns in one wave (64 MiB,
    # 32k tokens, took 42 s per checkpoint instead of 29 s on the 2-core box)
    kv_cache_bytes: int = 256 * 1024 * 1024
    # Tokens one engine step may schedule. On CPU chunked prefill is turned off: with seeded
    # per-request sampling, vLLM 0.32 rewinds a CPU torch.Generator's offset after a partial prefill
    # and fails ("CPU Generator does not use offset"), so whole prompts must fit in one step.
    max_num_batched_tokens: int = 16384
    enforce_eager: bool = True
    dtype: str = "float32"
    seed: int = 0


@dataclass
class SamplingConfig:
    """Sampling for rollouts (LLAMA2_SPEC.md section 2 defaults: T=0.6, top-p 0.9)."""

    n: int = 1  # K samples per prompt
    temperature: float = 0.6
    top_p: float = 0.9
    max_tokens: int = 64


@dataclass
class ScorerConfig:
    """One reward scorer. `kind` selects it; `_target_`-style functions are named by `target`.

    kind: learned (a reward model checkpoint) | llama2 (helpfulness + safety RMs combined by
    algorithms.llama2_reward) | function (a Python callable `module:name` or `module.name`) |
    http (a remote endpoint).
    """

    kind: str = "llama2"
    path: str = ""              # learned: checkpoint directory
    helpfulness_path: str = ""  # llama2
    safety_path: str = ""       # llama2
    safety_threshold: float = 0.15
    target: str = ""            # function: import path of `fn(prompts, answers, metas) -> list[float]`
    url: str = ""               # http
    timeout_s: float = 10.0
    retries: int = 2
    batch_size: int = 32
    # learned / llama2: bf16 autocast for the RM forward, true | false | "auto" (model/precision.py);
    # the conf/reward files set it to model.autocast_bf16. With native bf16 (AVX512-BF16) ~1.7x faster
    # scoring on a 2-core box; rankings agree with fp32 (tests/actors/test_reward.py, bench/reward_scoring.py)
    autocast_bf16: Any = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RewardConfig:
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    num_cpus: float = 0.25
    num_gpus: float = 0.0
    # intra-op threads of the reward actor; 0 follows its CPU share (floor(num_cpus), at least 1). The
    # stages score while the generators and learners wait, so the 2-core box gives it both cores
    torch_threads: int = 0
