"""The individual configuration rules behind `pipelines.validation.validate`.

Each `_check_*` returns a list of "dotted.key: what is wrong (got X, expected Y)" strings. Stage
sections are checked only for the stages that will run, so a single-stage run is not blocked by
another stage's knobs. GPU presence is deliberately not checked: a GPU config is valid on a driver
without GPUs that submits to a cluster.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from actors.config import GeneratorConfig, OptimConfig, ResourceConfig, ScorerConfig
from algorithms import KL_KINDS, MARGINS
from pipelines.config import GATT_CHOOSE, Config, world_bundle_config
from model.precision import check_autocast_setting

PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
DTYPES = ("float32", "bfloat16")
PARALLEL = ("ddp", "fsdp")
SCHEDULES = ("cosine", "constant")
PREPROMPTS = ("generic", "template")
DATA_SOURCES = ("world", "files")
FILE_FORMATS = ("auto", "parquet", "jsonl", "hh")
# Stages that call the reward role; the scorer's files, function or URL must be usable for them.
SCORING_STAGES = ("rejection_sampling", "ppo", "context_distillation", "evaluate")
# SentencePiece byte fallback needs the 256 byte pieces plus unk/bos/eos (LLAMA2_SPEC.md section 2),
# and BPE at least one learned piece on top.
MIN_VOCAB = 256 + 3 + 1
# The inputs each scorer kind reads (ScorerConfig fields).
SCORER_INPUTS = {"learned": ("path",), "llama2": ("helpfulness_path", "safety_path"),
                 "function": ("target",), "http": ("url",)}
# data=files: every list of paths, and the ones each stage reads.
FILE_FIELDS = ("pretrain_text", "sft", "helpfulness_pairs", "safety_pairs", "prompts", "eval_prompts")
FILE_INPUTS = {
    "pretrain": ("pretrain_text",),
    "sft": ("sft",),
    "reward_models": ("helpfulness_pairs", "safety_pairs"),
    "rejection_sampling": ("prompts",),
    "ppo": ("prompts",),
    "gatt": ("prompts",),
    "context_distillation": ("prompts",),
    "evaluate": ("eval_prompts",),
}


def _choice(key: str, value: str, choices: tuple[str, ...]) -> list[str]:
    return [] if value in choices else [f"{key}: {value!r} is not one of {list(choices)}"]


def _positive(key: str, value: float, allow_zero: bool = False) -> list[str]:
    ok = value >= 0 if allow_zero else value > 0
    return [] if ok else [f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}"]


def _all_positive(section: str, obj: object, names: tuple[str, ...], allow_zero: bool = False) -> list[str]:
    return [p for name in names for p in _positive(f"{section}.{name}", getattr(obj, name), allow_zero)]


def _in_unit(key: str, value: float, open_low: bool = False) -> list[str]:
    ok = (0 < value <= 1) if open_low else (0 <= value <= 1)
    return [] if ok else [f"{key}: must be in {'(0, 1]' if open_low else '[0, 1]'}, got {value}"]


def _user_path(key: str, path: str, run_dir: Path) -> list[str]:
    """A path the user gave must exist, unless this run produces it (it lies inside run_dir)."""
    p = Path(os.path.abspath(path))
    if p == run_dir or run_dir in p.parents or p.exists():
        return []
    return [f"{key}: path {path!r} does not exist"]


def _divides(key: str, value: int, ranks: int, ranks_key: str) -> list[str]:
    if ranks > 0 and value % ranks != 0:
        return [f"{key}: {value} is not divisible by {ranks_key}={ranks} (every learner rank needs an equal share)"]
    return []


def _check_resource(key: str, r: ResourceConfig) -> list[str]:
    out = _all_positive(key, r, ("num_workers", "torch_threads"))
    out += _all_positive(key, r, ("num_cpus", "num_gpus"), allow_zero=True)
    if r.num_gpus > 1 and r.num_gpus != int(r.num_gpus):
        out.append(f"{key}.num_gpus: Ray accepts fractions only below 1, got {r.num_gpus}")
    if r.num_cpus == 0 and r.num_gpus == 0:
        out.append(f"{key}: asks for no CPU and no GPU; give it num_cpus > 0 or num_gpus > 0")
    return out + _choice(f"{key}.strategy", r.strategy, PLACEMENT_STRATEGIES)


def _check_generator(key: str, g: GeneratorConfig, max_seq_len: int) -> list[str]:
    out = _all_positive(key, g, ("num_engines", "max_model_len"))
    out += _all_positive(key, g, ("num_cpus", "num_gpus", "torch_threads"), allow_zero=True)
    out += _in_unit(f"{key}.gpu_memory_utilization", g.gpu_memory_utilization, open_low=True)
    out += _choice(f"{key}.dtype", g.dtype, DTYPES)
    if g.max_model_len > max_seq_len:
        out.append(f"{key}.max_model_len: {g.max_model_len} exceeds model.max_seq_len={max_seq_len}")
    return out


def _check_optim(key: str, o: OptimConfig) -> list[str]:
    out = _all_positive(key, o, ("lr", "eps"))
    out += _all_positive(key, o, ("weight_decay", "grad_clip", "warmup_steps"), allow_zero=True)
    out += _in_unit(f"{key}.min_lr_ratio", o.min_lr_ratio)
    out += _choice(f"{key}.schedule", o.schedule, SCHEDULES)
    if not 0 <= o.warmup_ratio < 1:
        out.append(f"{key}.warmup_ratio: must be in [0, 1), got {o.warmup_ratio}")
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        out.append(f"{key}.betas: expected two values in [0, 1), got {list(o.betas)}")
    return out


def _sampling_fits(key: str, max_prompt_len: int, max_new_tokens: int, cfg: Config) -> list[str]:
    out = _positive(f"{key}.max_prompt_len", max_prompt_len) + _positive(f"{key}.max_new_tokens", max_new_tokens)
    limit = cfg.resources.generator.max_model_len
    if max_prompt_len + max_new_tokens > limit:
        out.append(f"{key}.max_new_tokens: max_prompt_len ({max_prompt_len}) + max_new_tokens ({max_new_tokens}) "
                   f"exceeds resources.generator.max_model_len={limit}")
    return out


def _check_model(cfg: Config, run_dir: Path) -> list[str]:
    from model.args import SIZES

    m = cfg.model
    out = _choice("model.size", m.size, tuple(SIZES)) + _choice("model.dtype", m.dtype, DTYPES)
    out += _positive("model.max_seq_len", m.max_seq_len) + _choice("model.parallel", m.parallel, PARALLEL)
    out += check_autocast_setting("model.autocast_bf16", m.autocast_bf16)
    if m.size != "tiny" and not m.init_path:
        out.append(f"model.init_path: is required for size {m.size!r} (set model.init_path=<HF checkpoint dir>)")
    if m.init_path:
        out += _user_path("model.init_path", m.init_path, run_dir)
    if m.tokenizer_path:
        out += _user_path("model.tokenizer_path", m.tokenizer_path, run_dir)
    return out


def _check_resources(cfg: Config) -> list[str]:
    r = cfg.resources
    out: list[str] = []
    for name in ("policy", "critic", "reference", "reward_model"):
        out += _check_resource(f"resources.{name}", getattr(r, name))
    out += _check_generator("resources.generator", r.generator, cfg.model.max_seq_len)
    out += _positive("reward.num_cpus", cfg.reward.num_cpus, allow_zero=True)
    out += _positive("reward.num_gpus", cfg.reward.num_gpus, allow_zero=True)
    out += _positive("reward.torch_threads", cfg.reward.torch_threads, allow_zero=True)
    if r.num_cpus is not None:
        out += _positive("resources.num_cpus", r.num_cpus)
    return out


def _check_scorer_source(s: ScorerConfig, run_dir: Path) -> list[str]:
    """The files, function or URL the scorer reads from must be usable."""
    missing = [f"reward.scorer.{name}: is required for reward.scorer.kind={s.kind}"
               for name in SCORER_INPUTS[s.kind] if not getattr(s, name)]
    if missing:
        return missing
    out: list[str] = []
    if s.kind in ("learned", "llama2"):
        for name in SCORER_INPUTS[s.kind]:
            out += _user_path(f"reward.scorer.{name}", getattr(s, name), run_dir)
    elif s.kind == "function":
        from actors.scorers import resolve_function

        try:
            resolve_function(s.target)
        except (ImportError, AttributeError, TypeError, ValueError) as e:
            out.append(f"reward.scorer.target: {e}")
    elif s.kind == "http":
        if not s.url.startswith(("http://", "https://")):
            out.append(f"reward.scorer.url: expected an http:// or https:// URL, got {s.url!r}")
        out += _positive("reward.scorer.timeout_s", s.timeout_s)
        out += _positive("reward.scorer.retries", s.retries, allow_zero=True)
    return out


def _check_reward(cfg: Config, stages: list[str], run_dir: Path) -> list[str]:
    from actors.scorers import SCORER_KINDS

    s = cfg.reward.scorer
    out = _choice("reward.scorer.kind", s.kind, SCORER_KINDS) + _positive("reward.scorer.batch_size", s.batch_size)
    out += _in_unit("reward.scorer.safety_threshold", s.safety_threshold)
    out += check_autocast_setting("reward.scorer.autocast_bf16", s.autocast_bf16)
    if out or not any(st in SCORING_STAGES for st in stages):
        return out
    return _check_scorer_source(s, run_dir)


def _check_data(cfg: Config, stages: list[str], run_dir: Path) -> list[str]:
    d = cfg.data
    out = _choice("data.source", d.source, DATA_SOURCES) + _choice("data.files.format", d.files.format, FILE_FORMATS)
    if d.source == "world":
        scale = _positive("data.world_scale", d.world_scale)
        try:
            if not scale:
                world_bundle_config(d)  # BundleConfig's own range checks
        except ValueError as e:
            scale.append(str(e))
        return out + scale
    needed: dict[str, str] = {}  # input -> the first stage that reads it
    for stage in stages:
        for name in FILE_INPUTS.get(stage, ()):
            needed.setdefault(name, stage)
    if cfg.model.init_path:
        needed.pop("pretrain_text", None)  # a pretrained checkpoint needs no pretraining text
    for name, stage in needed.items():
        if not getattr(d.files, name):
            out.append(f"data.files.{name}: is required with data=files for stage {stage}")
    for name in FILE_FIELDS:
        for i, path in enumerate(getattr(d.files, name)):
            out += _user_path(f"data.files.{name}[{i}]", path, run_dir)
    return out


def _check_logging(cfg: Config) -> list[str]:
    lg = cfg.logging
    out = _all_positive("logging", lg, ("flush_secs", "log_every"))
    out += _positive("logging.text_samples", lg.text_samples, allow_zero=True)
    levels = tuple(n for n in logging.getLevelNamesMapping() if n != "NOTSET")
    return out + _choice("logging.level", lg.level, levels)


def _ranks(cfg: Config, *roles: str) -> list[tuple[int, str]]:
    return [(getattr(cfg.resources, r).num_workers, f"resources.{r}.num_workers") for r in roles]


def _check_training(key: str, batch_size: int, epochs: int, optim: OptimConfig, cfg: Config,
                    role: str = "policy") -> list[str]:
    out = _positive(f"{key}.batch_size", batch_size) + _positive(f"{key}.epochs", epochs)
    out += _check_optim(f"{key}.optim", optim)
    for ranks, ranks_key in _ranks(cfg, role):
        out += _divides(f"{key}.batch_size", batch_size, ranks, ranks_key)
    return out


def _check_seq_len(key: str, seq_len: int, cfg: Config) -> list[str]:
    if seq_len < 2 or seq_len > cfg.model.max_seq_len:
        return [f"{key}: must be in [2, model.max_seq_len={cfg.model.max_seq_len}], got {seq_len}"]
    return []


def _check_pretrain(cfg: Config) -> list[str]:
    p = cfg.pretrain
    out = _check_training("pretrain", p.batch_size, 1, p.optim, cfg) + _check_seq_len("pretrain.seq_len", p.seq_len, cfg)
    out += _all_positive("pretrain", p, ("steps", "eval_every"))
    if p.vocab_size < MIN_VOCAB:
        out.append(f"pretrain.vocab_size: must be >= {MIN_VOCAB} (256 byte-fallback pieces, unk/bos/eos, "
                   f"one learned piece), got {p.vocab_size}")
    return out


def _check_sft(cfg: Config) -> list[str]:
    from model.chat import TRAIN_ON

    s = cfg.sft
    out = _check_training("sft", s.batch_size, s.epochs, s.optim, cfg) + _check_seq_len("sft.seq_len", s.seq_len, cfg)
    return out + _choice("sft.train_on", s.train_on, TRAIN_ON)


def _check_reward_models(cfg: Config) -> list[str]:
    r = cfg.reward_models
    out = _check_training("reward_models", r.batch_size, r.epochs, r.optim, cfg, role="reward_model")
    out += _choice("reward_models.margin", r.margin, tuple(MARGINS))
    out += _all_positive("reward_models", r, ("aux_weight", "helpful_safety_mix"), allow_zero=True)
    if not 0 <= r.safety_helpful_fraction < 1:
        out.append(f"reward_models.safety_helpful_fraction: must be in [0, 1), got {r.safety_helpful_fraction}")
    if not 0 < r.held_out_percent < 100:
        out.append(f"reward_models.held_out_percent: must be in (0, 100), got {r.held_out_percent}")
    return out + _check_model_pairs(cfg)


def _check_model_pairs(cfg: Config) -> list[str]:
    mp, key = cfg.reward_models.model_pairs, "reward_models.model_pairs"
    out = _positive(f"{key}.prompts", mp.prompts, allow_zero=True)
    if mp.prompts <= 0:
        return out
    if cfg.data.source != "world":
        out.append(f"{key}.prompts: labelling the policy's answers needs the world's oracle (data.source=world), "
                   f"got data.source={cfg.data.source!r}; set {key}.prompts=0")
    if not mp.kinds or len(set(mp.kinds)) != len(mp.kinds) or not set(mp.kinds) <= {"helpfulness", "safety"}:
        out.append(f"{key}.kinds: expected a non-empty list of distinct 'helpfulness' / 'safety', got {list(mp.kinds)}")
    if mp.samples < 2:
        out.append(f"{key}.samples: need at least 2 answers per prompt to make a pair, got {mp.samples}")
    if not mp.temperatures:
        out.append(f"{key}.temperatures: expected at least one sampling temperature")
    for i, t in enumerate(mp.temperatures):
        out += _positive(f"{key}.temperatures[{i}]", t)
    return out + _sampling_fits(key, mp.max_prompt_len, mp.max_new_tokens, cfg)


def _check_rejection_sampling(cfg: Config) -> list[str]:
    rs = cfg.rejection_sampling
    out = _check_training("rejection_sampling", rs.batch_size, rs.epochs, rs.optim, cfg)
    out += _all_positive("rejection_sampling", rs, ("rounds", "k", "prompts_per_round"))
    out += _sampling_fits("rejection_sampling", rs.max_prompt_len, rs.max_new_tokens, cfg)
    if len(rs.temperatures) not in (1, rs.rounds):
        out.append(f"rejection_sampling.temperatures: {len(rs.temperatures)} values for rounds={rs.rounds}; "
                   "give one per round or a single one for all rounds")
    for i, t in enumerate(rs.temperatures):
        out += _positive(f"rejection_sampling.temperatures[{i}]", t)
    kinds = ("helpful", "borderline", "adversarial")
    if not rs.prompt_kinds or any(k not in kinds for k in rs.prompt_kinds):
        out.append(f"rejection_sampling.prompt_kinds: expected a non-empty list of {list(kinds)}, "
                   f"got {list(rs.prompt_kinds)}")
    return out


def _check_ppo(cfg: Config) -> list[str]:
    p = cfg.ppo
    out = _all_positive("ppo", p, ("iterations", "prompts_per_iteration", "samples_per_prompt", "mini_batch_size",
                                   "ppo_epochs", "clip", "value_clip", "temperature", "early_stop_patience",
                                   "eval_every", "held_out_prompts"))
    out += _all_positive("ppo", p, ("beta", "entropy_coef"), allow_zero=True)
    out += _in_unit("ppo.gamma", p.gamma) + _in_unit("ppo.lam", p.lam) + _in_unit("ppo.top_p", p.top_p, open_low=True)
    out += _choice("ppo.kl_estimator", p.kl_estimator, KL_KINDS)
    out += _check_optim("ppo.optim", p.optim) + _check_optim("ppo.critic_optim", p.critic_optim)
    out += _sampling_fits("ppo", p.max_prompt_len, p.max_new_tokens, cfg)
    rollouts = p.prompts_per_iteration * p.samples_per_prompt
    if p.mini_batch_size > 0 and rollouts % p.mini_batch_size != 0:
        out.append(f"ppo.mini_batch_size: {p.mini_batch_size} does not divide prompts_per_iteration x "
                   f"samples_per_prompt = {rollouts} rollouts")
    if p.whiten_scores and rollouts < 2:
        out.append(f"ppo.whiten_scores: whitening needs at least 2 rollouts per iteration, got {rollouts}")
    for ranks, ranks_key in _ranks(cfg, "policy", "critic"):
        out += _divides("ppo.mini_batch_size", p.mini_batch_size, ranks, ranks_key)
    return out


def _check_gatt(cfg: Config) -> list[str]:
    g = cfg.gatt
    out = _check_training("gatt", g.batch_size, g.epochs, g.optim, cfg) + _all_positive("gatt", g, ("dialogues", "samples", "temperature"))
    out += _sampling_fits("gatt", g.max_prompt_len, g.max_new_tokens, cfg)
    if g.max_turns < 2:
        out.append(f"gatt.max_turns: Ghost Attention needs multi-turn dialogues (>= 2), got {g.max_turns}")
    if not 1 <= g.min_depth <= g.max_turns:
        out.append(f"gatt.min_depth: must be in [1, gatt.max_turns={g.max_turns}], got {g.min_depth}")
    if g.choose not in GATT_CHOOSE:
        out.append(f"gatt.choose: expected one of {list(GATT_CHOOSE)}, got {g.choose!r}")
    return out


def _check_context_distillation(cfg: Config) -> list[str]:
    c = cfg.context_distillation
    out = _check_training("context_distillation", c.batch_size, c.epochs, c.optim, cfg)
    out += _all_positive("context_distillation", c, ("prompts", "temperature", "samples"))
    out += _choice("context_distillation.preprompt", c.preprompt, PREPROMPTS)
    out += _choice("context_distillation.preprompt_position", c.preprompt_position, ("system", "user"))
    if not 0.0 <= c.min_gain < 1.0:
        out.append(f"context_distillation.min_gain: the safety score is in [0, 1], so the gain to keep an answer "
                   f"must be in [0, 1); got {c.min_gain}")
    return out + _sampling_fits("context_distillation", c.max_prompt_len, c.max_new_tokens, cfg)


def _check_evaluate(cfg: Config) -> list[str]:
    e = cfg.evaluate
    out = _positive("evaluate.prompts_per_kind", e.prompts_per_kind)
    out += _positive("evaluate.temperature", e.temperature, allow_zero=True)  # 0 = greedy
    out += _sampling_fits("evaluate", e.max_prompt_len, e.max_new_tokens, cfg)
    if not e.turns or any(t < 1 for t in e.turns) or list(e.turns) != sorted(set(e.turns)):
        out.append(f"evaluate.turns: expected increasing positive turn numbers, got {list(e.turns)}")
    if not e.rm_win_rate_against:
        out.append("evaluate.rm_win_rate_against: is required (a checkpoint name, e.g. sft)")
    return out


STAGE_CHECKS: dict[str, Callable[[Config], list[str]]] = {
    "pretrain": _check_pretrain,
    "sft": _check_sft,
    "reward_models": _check_reward_models,
    "rejection_sampling": _check_rejection_sampling,
    "ppo": _check_ppo,
    "gatt": _check_gatt,
    "context_distillation": _check_context_distillation,
    "evaluate": _check_evaluate,
}


def check_all(cfg: Config, stages: list[str], run_dir: Path) -> list[str]:
    out = _check_model(cfg, run_dir) + _check_resources(cfg) + _check_reward(cfg, stages, run_dir)
    out += _check_data(cfg, stages, run_dir) + _check_logging(cfg)
    for st in stages:
        if st in STAGE_CHECKS:
            out += STAGE_CHECKS[st](cfg)
    return out
