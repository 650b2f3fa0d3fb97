"""Pieces every stage driver shares: starting roles, SFT-style training loops, sampling prompts.

Drivers stay readable top to bottom; what they have in common lives here as plain functions over the
actor groups (STYLE.md habits 1 and 9: composition, one gather per phase).
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from actors.batch import TokenBatch
from actors.config import GeneratorConfig, LearnerConfig, OptimConfig, ResourceConfig, SamplingConfig
from actors.group import ActorGroup
from model.chat import encode_dialog, encode_prompt
from model.tokenizer import Tokenizer
from pipelines.config import Config
from pipelines.metrics import MetricsLogger
from pipelines.packing import Example, PackedRows, pack_examples
from pipelines.rundir import RunDir

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# roles
# ---------------------------------------------------------------------------------------------

def learner_group(cfg: Config, name: str, init_path: Path | str, optim: OptimConfig,
                  resources: ResourceConfig, model_kind: str = "lm") -> ActorGroup:
    """A learner group (policy, critic or reward model) started from an HF checkpoint."""
    from actors.learner import Learner

    lcfg = LearnerConfig(
        init_path=str(init_path), model_kind=model_kind, optim=optim, resources=resources, parallel=cfg.model.parallel,
        dtype=cfg.model.dtype, autocast_bf16=cfg.model.autocast_bf16, seed=cfg.seed,
    )
    group = ActorGroup(Learner, resources, init_kwargs={"cfg": lcfg}, name=name)
    log.info("group %s: %s (model.autocast_bf16=%s)", name, ", ".join(sorted(set(group.run("precision")))),
             cfg.model.autocast_bf16)
    return group


def generator_pool(cfg: Config, model_path: Path | str, seed_offset: int = 0):
    """The vLLM generator pool serving `model_path` (weights are then synced in place).

    Inside `shared_generators()` (the pipeline driver) the engines of the previous stage are kept and
    reloaded with `model_path` (weight version 0, as a new pool's) instead of starting new actors, which
    cost 13-15 s per stage on the 2-core box; the returned handle's `shutdown()` then leaves them running.
    """
    from actors.generator import GeneratorPool

    gcfg: GeneratorConfig = replace(cfg.resources.generator, max_model_len=cfg.model.max_seq_len,
                                    seed=cfg.seed + seed_offset)
    if not _SHARED.active:
        return GeneratorPool(gcfg, str(model_path))
    if _SHARED.pool is not None and _SHARED.config == gcfg:
        try:
            load_into_pool(_SHARED.pool, model_path, 0)
            log.info("generators: kept from the previous stage, reloaded with %s", model_path)
            return _Lease(_SHARED.pool)
        except Exception as e:  # noqa: BLE001 - a dead engine or a checkpoint of another shape: start anew
            log.warning("generators: the kept pool could not load %s (%s: %s); starting new engines",
                        model_path, type(e).__name__, str(e)[:200])
    _release_shared()
    _SHARED.pool, _SHARED.config = GeneratorPool(gcfg, str(model_path)), gcfg
    return _Lease(_SHARED.pool)


def load_into_pool(pool, path: Path | str, version: int) -> None:
    """Reload every engine of `pool` in place with the HF checkpoint at `path`, served as `version`."""
    from model import hf_state_dict, load_pretrained

    pool.sync_weights(hf_state_dict(load_pretrained(path)), version)


@dataclass
class _SharedPool:
    active: bool = False
    pool: Any = None
    config: GeneratorConfig | None = None


_SHARED = _SharedPool()


class _Lease:
    """A stage's handle on the shared pool: everything but `shutdown` goes to the pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def shutdown(self) -> None:
        """The engines stay up for the next stage; `shared_generators()` stops them."""


def _release_shared() -> None:
    pool, _SHARED.pool, _SHARED.config = _SHARED.pool, None, None
    if pool is not None:
        try:
            pool.shutdown()
        except Exception as e:  # noqa: BLE001 - an engine that already died
            log.warning("generators: shutting down the kept pool failed (%s: %s)", type(e).__name__, e)


@contextlib.contextmanager
def shared_generators():
    """Within this block every `generator_pool` call with the same generator config reuses one pool."""
    if _SHARED.active:  # nested: the outer block owns the pool
        yield
        return
    _SHARED.active = True
    try:
        yield
    finally:
        _SHARED.active = False
        _release_shared()


def reference_group(cfg: Config, init_path: Path | str) -> ActorGroup:
    """The frozen reference policy pi_0 (no optimizer, no process group)."""
    from actors.reference import Reference

    lcfg = LearnerConfig(init_path=str(init_path), model_kind="lm", resources=cfg.resources.reference,
                         dtype=cfg.model.dtype, autocast_bf16=cfg.model.autocast_bf16, seed=cfg.seed)
    return ActorGroup(Reference, cfg.resources.reference, init_kwargs={"cfg": lcfg}, name="reference", backend=None)


class NullMetrics:
    """Stands in for MetricsLogger when `logging.tensorboard=false`: same verbs, nothing written."""

    totals: dict[str, float] = {}

    def scalars(self, *a: Any, **k: Any) -> None: ...
    def histogram(self, *a: Any, **k: Any) -> None: ...
    def text(self, *a: Any, **k: Any) -> None: ...
    def close(self) -> None: ...

    def timer(self, *a: Any, **k: Any) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def metrics_logger(cfg: Config, run: RunDir) -> MetricsLogger | NullMetrics:
    if not cfg.logging.tensorboard:
        return NullMetrics()
    return MetricsLogger(cfg.logging.log_dir or run.tb, flush_secs=cfg.logging.flush_secs)


def load_tokenizer(cfg: Config, run: RunDir) -> Tokenizer:
    path = Path(cfg.model.tokenizer_path) if cfg.model.tokenizer_path else run.tokenizer / "tokenizer.model"
    run.require(path, "pretrain")
    return Tokenizer(path)


# ---------------------------------------------------------------------------------------------
# SFT-style training (SFT, rejection sampling, GAtt, context distillation)
# ---------------------------------------------------------------------------------------------

def dialog_examples(tok: Tokenizer, dialogs: Sequence[tuple[str, list[dict]]], train_on: str,
                    max_len: int) -> tuple[list[Example], int]:
    """Encode (id, messages) dialogues; those longer than `max_len` tokens are skipped and counted."""
    out: list[Example] = []
    skipped = 0
    for did, messages in dialogs:
        enc = encode_dialog(tok, messages, train_on=train_on)
        if len(enc.tokens) > max_len:
            skipped += 1
            continue
        out.append(Example(enc.tokens, enc.loss_mask, did))
    if skipped:
        log.warning("%d of %d dialogues longer than %d tokens were skipped", skipped, len(dialogs), max_len)
    return out, skipped


def _pad_rows(rows: PackedRows, multiple: int) -> PackedRows:
    """Pad with loss-free rows so every learner rank gets the same number of rows."""
    extra = (-len(rows)) % multiple
    if extra == 0:
        return rows
    z = torch.zeros((extra, rows.tokens.shape[1]), dtype=torch.long)
    return PackedRows(torch.cat([rows.tokens, z]), torch.cat([rows.loss_mask, z.float()]),
                      torch.cat([rows.segment_ids, z]))


def train_packed(group: ActorGroup, rows: PackedRows, *, epochs: float, batch_size: int,
                 stage: str, metrics: MetricsLogger | NullMetrics, seed: int, step0: int = 0,
                 use_segments: bool = True, max_steps: int | None = None) -> dict[str, float]:
    """Run optimizer steps over packed rows (shuffled per epoch); returns the last step's stats."""
    n = len(rows)
    steps_per_epoch = max(1, n // batch_size) if n >= batch_size else 1
    total = max(1, int(math.ceil(steps_per_epoch * epochs)))
    if max_steps is not None:
        total = min(total, max_steps)
    group.run("set_total_steps", total)
    rng = random.Random(seed)
    order: list[int] = []
    stats: dict[str, float] = {}
    for step in range(total):
        if len(order) < batch_size:
            perm = list(range(n))
            rng.shuffle(perm)
            order.extend(perm)
        idx, order = order[:batch_size], order[batch_size:]
        part = _pad_rows(rows.select(idx), group.world_size)
        batch = TokenBatch(part.tokens, part.loss_mask, part.segment_ids if use_segments else None)
        stats = group.run_sharded("train_sft", batch)[0]
        metrics.scalars(stage, {k: v for k, v in stats.items() if isinstance(v, (int, float))}, step0 + step)
        if step % 20 == 0 or step == total - 1:
            log.info("%s step %d/%d %s", stage, step + 1, total,
                     " ".join(f"{k}={v:.4g}" for k, v in stats.items() if isinstance(v, float)))
    return stats


def sft_on_dialogs(group: ActorGroup, tok: Tokenizer, dialogs: Sequence[tuple[str, list[dict]]], *,
                   train_on: str, seq_len: int, epochs: float, batch_size: int, stage: str,
                   metrics: MetricsLogger | NullMetrics, seed: int) -> dict[str, Any]:
    examples, skipped = dialog_examples(tok, dialogs, train_on, seq_len)
    if not examples:
        raise ValueError(f"{stage}: no trainable dialogue (all {len(dialogs)} skipped or none given)")
    rows = pack_examples(examples, seq_len, seed=seed)
    stats = train_packed(group, rows, epochs=epochs, batch_size=batch_size, stage=stage,
                         metrics=metrics, seed=seed)
    return {"examples": len(examples), "skipped_too_long": skipped, "rows": len(rows), **{
        f"final_{k}": v for k, v in stats.items() if isinstance(v, float)}}


# ---------------------------------------------------------------------------------------------
# sampling prompts on the generator pool
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Completion:
    prompt_index: int
    sample_index: int
    prompt_tokens: list[int]
    response_tokens: list[int]
    response_logprobs: list[float]
    text: str
    weight_version: int


def strip_eos(tokens: Sequence[int], eos_id: int) -> list[int]:
    out = list(tokens)
    if out and out[-1] == eos_id:
        out = out[:-1]
    return out


def complete(pool, tok: Tokenizer, prompts: Sequence[list[dict]], *, n: int, temperature: float,
             top_p: float, max_new_tokens: int, max_prompt_len: int, seed: int) -> list[list[Completion]]:
    """Sample `n` answers per prompt (messages ending with a user turn); grouped per prompt.

    Prompts longer than `max_prompt_len` tokens are an error naming the prompt: the caller filters.
    """
    token_prompts = []
    for i, messages in enumerate(prompts):
        ids = encode_prompt(tok, messages)
        if len(ids) > max_prompt_len:
            raise ValueError(f"prompt {i} has {len(ids)} tokens, more than max_prompt_len={max_prompt_len}")
        token_prompts.append(ids)
    greedy = temperature <= 0
    sampling = SamplingConfig(n=n, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
                              max_tokens=max_new_tokens)
    samples = pool.generate(token_prompts, sampling, seed=seed)
    grouped: list[list[Completion]] = [[] for _ in prompts]
    for s in samples:
        resp = list(s.token_ids)
        grouped[s.prompt_index].append(Completion(
            s.prompt_index, s.sample_index, token_prompts[s.prompt_index], resp, list(s.logprobs),
            tok.decode(strip_eos(resp, tok.eos_id)).strip(), s.weight_version))
    return grouped


def prompt_fits(tok: Tokenizer, messages: list[dict], max_prompt_len: int) -> bool:
    return len(encode_prompt(tok, messages)) <= max_prompt_len


# ---------------------------------------------------------------------------------------------
# reward
# ---------------------------------------------------------------------------------------------

def reward_actor(cfg: Config, run: RunDir):
    """The reward role with the scorer chosen by `reward=...`; empty RM paths mean this run's RMs."""
    from actors.reward import start_reward_actor

    scorer = replace(cfg.reward.scorer)
    if scorer.kind == "llama2":
        scorer.helpfulness_path = scorer.helpfulness_path or str(run.require(run.checkpoint("rm_helpfulness"), "reward_models"))
        scorer.safety_path = scorer.safety_path or str(run.require(run.checkpoint("rm_safety"), "reward_models"))
    elif scorer.kind == "learned" and not scorer.path:
        scorer.path = str(run.require(run.checkpoint("rm_helpfulness"), "reward_models"))
    return start_reward_actor(replace(cfg.reward, scorer=scorer))


def score_requests(prompt_rows: Sequence[dict], completions: Sequence[Sequence[Completion]],
                   override_messages: Sequence[list[dict]] | None = None) -> list:
    """ScoreRequests for every completion, in prompt-major order."""
    from actors.reward import ScoreRequest

    reqs = []
    for i, (row, group) in enumerate(zip(prompt_rows, completions)):
        messages = override_messages[i] if override_messages is not None else row["messages"]
        for c in group:
            reqs.append(ScoreRequest(prompt_tokens=c.prompt_tokens, response_tokens=c.response_tokens,
                                     prompt_messages=messages, response_text=c.text,
                                     is_safety=bool(row["is_safety"]), meta_json=row["meta"]))
    return reqs


def score_tensor(scores: dict, key: str) -> torch.Tensor:
    """One score of a reward actor's reply as a float32 tensor: a copy, since Ray hands back read-only arrays."""
    return torch.tensor(scores[key], dtype=torch.float32)


def selection_scores(scores: dict) -> torch.Tensor:
    """The score best-of-K and PPO optimise: the Llama 2 combination Rc when the scorer gives it."""
    return score_tensor(scores, "combined" if "combined" in scores else "reward")
