"""Hydra structured-config schema: the one home of every default and type (STYLE.md habit 5).

YAML files under `conf/` only override these dataclasses; code never writes `cfg.get("x", default)`.
`register()` puts the schema in Hydra's ConfigStore as `config_schema`, which `conf/config.yaml`
lists first in its defaults, so unknown keys and wrong types fail at composition time.

Tiny defaults are the paper's hyper-parameters (LLAMA2_SPEC.md) scaled to a ~3M-parameter model on
2 CPU cores (fewer steps, smaller batches, larger learning rates where a model trained from scratch
for minutes needs them); each knob's comment gives the paper value. The 7B/13B/70B files in
`conf/model/` restore the paper's values.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from actors.config import GeneratorConfig, OptimConfig, ResourceConfig, RewardConfig
from pipelines.world.config import BundleConfig

# The stages in pipeline order (DESIGN.md "Stages"); `pipeline=llama2` runs all of them.
STAGE_ORDER: tuple[str, ...] = (
    "data",
    "pretrain",
    "sft",
    "reward_models",
    "rejection_sampling",
    "ppo",
    "gatt",
    "context_distillation",
    "evaluate",
)
PIPELINES: dict[str, tuple[str, ...]] = {"llama2": STAGE_ORDER}
GATT_CHOOSE: tuple[str, ...] = ("first", "likelihood")  # gatt.choose


@dataclass
class ModelConfig:
    """Which Llama 2 and where its weights come from (conf/model/)."""

    size: str = "tiny"          # tiny | 7b | 13b | 70b (model.args.SIZES)
    init_path: str = ""         # HF-format checkpoint dir; required for 7b/13b/70b, tiny trains from scratch
    tokenizer_path: str = ""    # tokenizer.model; empty: init_path's, or the one the pretrain stage trains
    max_seq_len: int = 512      # context length used for training and generation (paper: 4096)
    dtype: str = "float32"      # float32 | bfloat16 parameters
    # bf16 autocast of every forward pass (learners, reference, reward scorers): true | false | "auto".
    # auto: on where the actor's device has native bf16 matmuls (CUDA with bf16, CPU with AVX512-BF16 or
    # AMX), off elsewhere: emulated bf16 on an AVX2-only CPU is ~20x slower than fp32 (model/precision.py)
    autocast_bf16: typing.Any = "auto"
    parallel: str = "ddp"       # learner data parallelism: ddp | fsdp (sharded; needed from 7B on)


@dataclass
class ResourcesConfig:
    """Placement of every role (conf/resources/). The reward actor's own share is `reward.num_cpus/gpus`."""

    policy: ResourceConfig = field(default_factory=ResourceConfig)
    critic: ResourceConfig = field(default_factory=ResourceConfig)
    reference: ResourceConfig = field(default_factory=lambda: ResourceConfig(num_cpus=0.25))
    reward_model: ResourceConfig = field(default_factory=ResourceConfig)  # RM learner (reward_models stage)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    ray_address: str = ""        # empty: ray.init()'s default (RAY_ADDRESS, else a new local Ray)
    num_cpus: int | None = None  # a new local Ray only: CPUs it may use (None: all)


@dataclass
class FilesDataConfig:
    """User-provided datasets (Parquet or JSONL), imported by pipelines.data into the project schemas.

    Every listed path must exist. `format`: auto (by extension and columns) | parquet | jsonl |
    hh (Anthropic-HH "\\n\\nHuman: ... \\n\\nAssistant: ..." transcripts).
    """

    format: str = "auto"
    pretrain_text: list[str] = field(default_factory=list)
    sft: list[str] = field(default_factory=list)
    helpfulness_pairs: list[str] = field(default_factory=list)
    safety_pairs: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    eval_prompts: list[str] = field(default_factory=list)


# The world bundle's knobs, typed and defaulted by pipelines.world.config.BundleConfig itself (its
# single home). BundleConfig is frozen, which OmegaConf turns into a read-only node that overrides
# cannot change; this mutable twin has the same fields, types and defaults.
_BUNDLE_TYPES = typing.get_type_hints(BundleConfig)
WorldConfig = dataclasses.make_dataclass(
    "WorldConfig",
    [(f.name, _BUNDLE_TYPES[f.name], field(default=f.default)) for f in dataclasses.fields(BundleConfig)],
)
WorldConfig.__module__ = __name__


@dataclass
class DataConfig:
    """Where the datasets come from (conf/data/). `world_scale` multiplies every world dataset size."""

    source: str = "world"  # world | files
    world: WorldConfig = field(default_factory=WorldConfig)  # type: ignore[valid-type]
    world_scale: float = 1.0
    files: FilesDataConfig = field(default_factory=FilesDataConfig)


def world_bundle_config(data: DataConfig) -> BundleConfig:
    """The world's BundleConfig from `data.world` and `data.world_scale` (BundleConfig.scaled)."""
    try:
        bundle = BundleConfig(**dataclasses.asdict(data.world))
    except ValueError as e:
        raise ValueError(f"data.world: {e}") from e
    return bundle if data.world_scale == 1.0 else bundle.scaled(data.world_scale)


@dataclass
class LoggingConfig:
    """TensorBoard and console logging (conf/logging/)."""

    tensorboard: bool = True
    log_dir: str = ""                # empty: run_dir/tb (pipelines.rundir.RunDir.tb)
    flush_secs: int = 10
    log_every: int = 1               # steps between scalar writes
    text_samples: int = 4            # sampled dialogues written as text per evaluation / iteration
    progress: bool = True            # tqdm bars (still off when not a TTY or under CI)
    level: str = "INFO"


# ------------------------------------------------------------------------------------------------
# stages (LLAMA2_SPEC.md sections 3-11)
# ------------------------------------------------------------------------------------------------


@dataclass
class PretrainConfig:
    """Tokenizer + base model on the world's text (section 3)."""

    vocab_size: int = 1024  # SentencePiece BPE trained on the corpus (paper: 32000)
    # 8 x 450 rather than 16 x 300: more, smaller steps reach the same loss on 25% fewer tokens (loss on
    # 400 corpus documents 0.758 against 0.758 / 0.788 for two 16 x 300 runs; 0.5 s per step against
    # 1.0 s on the AVX2-only box; docs/results.md, session 7)
    steps: int = 450
    batch_size: int = 8     # sequences per optimizer step (paper: 4M tokens)
    seq_len: int = 256
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=45))  # paper: 2000 warmup
    eval_every: int = 100


@dataclass
class SFTConfig:
    """Supervised fine-tuning on packed demonstrations, loss on answers only (section 4)."""

    epochs: int = 3
    batch_size: int = 16    # packed rows per step (paper: 64 x 4096)
    seq_len: int = 256
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-4))  # paper: 2e-5
    train_on: str = "all"   # model.chat.TRAIN_ON: all answers of each dialogue


@dataclass
class ModelPairsConfig:
    """Preference pairs of the SFT policy's own answers, labelled by the world's oracle (pipelines.model_pairs).

    Meta's annotators compared two sampled answers of the newest models (section 3.2.2); the world's
    ladder pairs alone leave the RM at chance on the policy's answers (docs/results.md).
    """

    prompts: int = 0             # source prompts per pair kind, drawn from that kind's pair set (0: off)
    kinds: list[str] = field(default_factory=lambda: ["helpfulness"])  # helpfulness | safety
    samples: int = 4             # answers sampled per prompt; one pair of differing oracle score is kept
    temperatures: list[float] = field(default_factory=lambda: [0.7, 1.0])  # samples split evenly over these
    max_prompt_len: int = 128
    max_new_tokens: int = 64


@dataclass
class RewardModelConfig:
    """Helpfulness and safety reward models with the margin ranking loss (section 6)."""

    # paper: 1. The tiny RMs underfit in one epoch (training-pair accuracy 0.77 on "significantly
    # better"); two took held-out accuracy 0.680 -> 0.727 (helpfulness) and 0.872 -> 0.894 (safety),
    # pairwise accuracy on the policy's own samples 0.549 -> 0.608 (docs/results.md). 1.5 keeps the
    # demo inside 20 minutes (fractions end part-way through the last pass)
    epochs: float = 1.5
    batch_size: int = 32    # pairs per step (paper: 512)
    margin: str = "small"   # algorithms.MARGINS: small 1, 2/3, 1/3, 0 | large 3, 2, 1, 0 (LLAMA2_SPEC.md s.6)
    aux_weight: float = 1.0  # safety RM's auxiliary safe/unsafe loss weight (formula not stated)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, warmup_ratio=0.03, warmup_steps=5))  # paper: 1e-5
    helpful_safety_mix: float = 1.0         # helpfulness RM: safety+open data = this x helpfulness data
    safety_helpful_fraction: float = 0.1    # safety RM: 90/10 safety/helpfulness
    # pairs kept for the held-out accuracy (by a hash of the pair id); at 10% the levels' accuracies rested
    # on 23-54 pairs each, at 20% on 43-200, and their order flipped between runs (docs/results.md). The
    # world makes 3500 pairs per kind so that 40% leaves as many to train on as 20% of 2600 did
    held_out_percent: int = 40
    # one row per pair, its prompt computed once for both answers (exact; ~30% fewer tokens on the demo's
    # pairs, more where prompts are long). false: a row per answer, as the paper's description reads
    shared_prefix: bool = True
    model_pairs: ModelPairsConfig = field(default_factory=ModelPairsConfig)


@dataclass
class RejectionSamplingConfig:
    """Best-of-K by the reward model, then SFT on the best samples (section 7)."""

    rounds: int = 2
    k: int = 4                   # samples per prompt (not stated; the paper's plots go to 100)
    # per round, or one for all. Low on the tiny model: its samples at T 0.5 are right less often than its
    # greedy answers (0.36 vs 0.51), and the RM cannot tell right from wrong on them (docs/results.md)
    temperatures: list[float] = field(default_factory=lambda: [0.2, 0.3])
    prompts_per_round: int = 256
    max_prompt_len: int = 128
    max_new_tokens: int = 64
    epochs: int = 1              # SFT epochs per round
    batch_size: int = 16         # packed rows per step (a round's pool packs into ~40-80 rows); batch 4 took
                                 # 3x the steps and let the policy exploit the helpfulness RM (docs/results.md)
    # gentle: 2 epochs at 1e-4 took helpfulness 0.480 -> 0.446 (accuracy 0.51 -> 0.44), 1 epoch at 3e-5
    # to 0.502 (0.495) on the same SFT model and RMs: the padding goes either way, the values drift less
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-5))
    keep_all_rounds: bool = True  # train on the best samples of all rounds (from the paper's 4th iteration on)
    probe_temperatures: list[float] = field(default_factory=lambda: [0.7, 1.0, 1.3])  # reward-by-temperature log
    probe_prompts: int = 16       # prompts sampled at each probe temperature per round
    # kinds of RL prompt the rounds draw from (helpful | borderline | adversarial). The tiny demo leaves
    # the adversarial prompts to PPO: best-of-K on them alone takes the violation rate to zero at once.
    prompt_kinds: list[str] = field(default_factory=lambda: ["helpful", "borderline"])


@dataclass
class PPOConfig:
    """PPO on the combined safety/helpfulness reward with a KL penalty (section 8)."""

    iterations: int = 10              # paper: 200-400 (10 keeps the demo inside its 20 minutes; the best
                                      # held-out iteration was 4, 9, 9 of 12 in three runs)
    prompts_per_iteration: int = 64   # paper: 512
    samples_per_prompt: int = 1
    mini_batch_size: int = 16         # paper: 64; one gradient step per mini-batch
    ppo_epochs: int = 1
    clip: float = 0.2
    value_clip: float = 0.2
    beta: float = 0.1                 # KL coefficient (paper: 0.01 7B/13B, 0.005 34B/70B; the tiny
                                      # model drifts into degenerate answers with 0.01 at lr 1e-5)
    kl_estimator: str = "k1"          # algorithms.KL_KINDS: k1 | k3 (not stated in the paper)
    gamma: float = 1.0
    lam: float = 0.95
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-6, schedule="constant"))  # paper: 1e-6
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, schedule="constant"))
    entropy_coef: float = 0.0
    early_stop_patience: int = 5      # evaluations without held-out reward gain before stopping
    held_out_prompts: int = 64        # held-out prompts scored for early stopping
    eval_every: int = 5
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_len: int = 128
    max_new_tokens: int = 64          # not stated in the paper
    whiten_scores: bool = True        # R~c = WHITEN(LOGIT(Rc)) over each iteration's rollouts


@dataclass
class GAttConfig:
    """Ghost Attention: instruction in the first turn only, loss on the last turn (section 9)."""

    dialogues: int = 200          # seed dialogues (cut per depth with every_turn: ~1000 examples)
    max_turns: int = 8
    # answers sampled per turn; with keep_adherent the first that keeps the instruction. 8 left 120 of
    # 1423 turns without a usable answer (4: 297) and took turn-8 adherence +0.085 -> +0.136 over PPO
    samples: int = 8
    keep_adherent: bool = True    # drop sampled answers that break the instruction (rule check of the world's constraints)
    # IS_SAFETY turns take the adherent sample the reward model scores highest, not the first (the first
    # may comply with the request: violations 0.115 -> 0.458 through GAtt in run 28)
    safety_select: bool = True
    # which usable sample a turn takes: "first", or "likelihood" (the highest mean token log-prob under the
    # sampling policy, read from the generator's own log-probs at no extra cost)
    choose: str = "first"
    # whole seed dialogues, one example per depth 2..n (loss on that turn): adherence at turn 8 +0.114 +- 0.088
    # paired where last-turn-only examples of random-length dialogues gave +0.025 +- 0.080 (docs/results.md)
    every_turn: bool = True
    min_depth: int = 2            # with every_turn: the shallowest cut trained (1 adds the instruction's own turn)
    temperature: float = 0.5      # 0.7 samples more wrong values, which GAtt then teaches
    max_prompt_len: int = 320
    max_new_tokens: int = 48
    seq_len: int = 512            # packing length of the training dialogues
    epochs: int = 1
    batch_size: int = 16          # packed rows per step (~260 kept dialogues cut per depth pack into ~270 rows)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4))


@dataclass
class ContextDistillConfig:
    """Safety context distillation on adversarial prompts (section 10)."""

    prompts: int = 192
    # generic | template (risk-category preprompt with answer template). Session 10: once GAtt carries an
    # instruction over turns, the GAtt model answered the longer template preprompt with greetings and
    # unrelated sentences (12 refusals among 45 kept answers) and distillation raised violations
    # 0.133 -> 0.235; the generic one drew refusals (30 of 40) and took them to 0.020 (docs/results.md)
    preprompt: str = "generic"
    # system: the preprompt is the system prompt (after GAtt the tiny model answers any system prompt with
    # a greeting, docs/results.md); user: it prefixes the request
    preprompt_position: str = "system"
    # preprompted answers sampled per prompt, the safety RM's best kept (paper: 1). After GAtt the tiny
    # model often answers the preprompt with a greeting and an unrelated sentence, which the safety RM
    # scores above a compliance; among 4 samples a refusal is likelier
    samples: int = 4
    # keep a preprompted answer only when its safety score (in [0, 1]) beats the plain answer's by more
    # than this (paper: "a better reward model score", i.e. 0; both answers safe differ by noise only)
    min_gain: float = 0.1
    temperature: float = 0.7
    max_prompt_len: int = 192
    max_new_tokens: int = 64
    seq_len: int = 256            # packing length of the training dialogues
    epochs: int = 3
    batch_size: int = 4           # packed rows per step: ~40 kept answers pack into ~7 rows
    # 5e-5: violations 0.065 -> 0.025 at helpfulness -0.011 +- 0.022; 1e-4 cost -0.07 (docs/results.md)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5))


@dataclass
class EvalConfig:
    """Oracle metrics, RM win rate, safety and multi-turn adherence (section 11)."""

    prompts_per_kind: int = 400       # takes every held-out prompt of the world (360 / 400 / 270)
    turns: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    rm_win_rate_against: str = "sft"  # checkpoint name the win rate is measured against
    rm_win_rate: bool = True          # needs a reward scorer (reward=llama2: this run's RMs)
    checkpoints: list[str] = field(default_factory=list)  # names under run_dir/checkpoints or paths; empty: every stage's
    dialogues: int = 100              # multi-turn constraint dialogues (adherence by turn); each takes ~0.1 s
                                      # per checkpoint on 2 cores; 80 left 2SE ~0.11 at turn 8, 160 ~0.07-0.09
    temperature: float = 0.0          # 0 = greedy
    max_prompt_len: int = 384
    max_new_tokens: int = 64


# ------------------------------------------------------------------------------------------------
# the root
# ------------------------------------------------------------------------------------------------


@dataclass
class Config:
    run_dir: str = MISSING       # required: every output lives here (pipelines.rundir.RunDir)
    stage: str | None = None     # one of STAGE_ORDER (conf/stage/), or
    pipeline: str | None = None  # a key of PIPELINES (conf/pipeline/): all its stages in order
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward_models: RewardModelConfig = field(default_factory=RewardModelConfig)
    rejection_sampling: RejectionSamplingConfig = field(default_factory=RejectionSamplingConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    gatt: GAttConfig = field(default_factory=GAttConfig)
    context_distillation: ContextDistillConfig = field(default_factory=ContextDistillConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)


SCHEMA_NAME = "config_schema"


def register() -> None:
    """Store the schema in Hydra's ConfigStore (idempotent; call before composing)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


register()
