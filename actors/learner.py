"""The learner: one rank of a trainable model (policy, critic or reward model) with its optimizer.

A plain class that `ActorGroup` wraps with `ray.remote` (composition: it holds a model, an AdamW and
the schedule, and calls the pure objectives of actors/objectives.py). Data parallelism is DDP over
gloo (CPU) or NCCL (GPU). Loss normalisation makes N ranks equal to one process on the whole batch:
every micro-batch's mean loss is weighted by its share of the GLOBAL unit count (all-reduced), times
the world size because DDP averages gradients over ranks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from actors.batch import PairBatch, PPOBatch, TokenBatch
from actors.config import LearnerConfig
from actors.group import RankContext, setup_rank
from actors.objectives import (
    MicroResult,
    forward_logprobs,
    forward_pair_scores,
    forward_scores,
    forward_values,
    ppo_objective,
    ranking_objective,
    sft_objective,
    value_objective,
)
from actors.schedule import build_optimizer, load_train_state, lr_factor, save_train_state
from model import ScalarModel, Tokenizer, Transformer, hf_state_dict, load_pretrained, save_pretrained
from model.precision import resolve_autocast_bf16

__all__ = ["Learner", "load_model", "torch_dtype", "TRAIN_STATE_DIR"]

log = logging.getLogger(__name__)

TRAIN_STATE_DIR = "train_state"  # inside a saved checkpoint: optimizer + counters for resume
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_KINDS = ("lm", "scalar")


def torch_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def load_model(path: str, kind: str, dtype: torch.dtype) -> Transformer | ScalarModel:
    """Load a checkpoint as `kind`; an LM checkpoint loaded as `scalar` gets a fresh score head.

    Paper section 3.2.2: the reward models (and here the critic) start from the chat model with the
    next-token head replaced by a regression head. The head starts at zero, so every initial score is
    0 (sigmoid 0.5): no arbitrary preference before training.
    """
    if kind not in _KINDS:
        raise ValueError(f"LearnerConfig.model_kind {kind!r} is not one of {_KINDS}")
    if not path:
        raise ValueError("LearnerConfig.init_path is empty; expected an HF-format checkpoint directory")
    loaded = load_pretrained(path, dtype=dtype)
    if kind == "lm":
        if not isinstance(loaded, Transformer):
            raise ValueError(f"{path} holds a {type(loaded).__name__}, but model_kind 'lm' needs a language model")
        return loaded
    if isinstance(loaded, ScalarModel):
        return loaded
    scalar = ScalarModel(loaded.args).to(dtype)
    trunk = {k: v for k, v in loaded.state_dict().items() if k != "output.weight"}
    missing, unexpected = scalar.load_state_dict(trunk, strict=False)
    if missing != ["score.weight"] or unexpected:
        raise ValueError(f"{path}: LM trunk does not fit a ScalarModel (missing {missing}, unexpected {unexpected})")
    nn.init.zeros_(scalar.score.weight)
    log.info("initialised a ScalarModel from the LM checkpoint %s with a zero score head", path)
    return scalar


def _wrap_parallel(module: nn.Module, parallel: str, device: torch.device) -> nn.Module:
    if parallel == "fsdp":
        raise NotImplementedError("LearnerConfig.parallel='fsdp' (FSDP2 fully_shard) is not implemented; use 'ddp'")
    if parallel != "ddp":
        raise ValueError(f"LearnerConfig.parallel {parallel!r} is not one of ('ddp', 'fsdp')")
    if not dist.is_initialized():
        return module  # a single in-process learner (ctx.backend None): nothing to synchronise
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def _units(mb: TokenBatch | PPOBatch | PairBatch) -> int:
    """What the loss averages over: trainable target tokens, response tokens, or pairs."""
    if isinstance(mb, TokenBatch):
        return int((mb.loss_mask[:, 1:] != 0).sum())
    if isinstance(mb, PPOBatch):
        return int((mb.response_mask != 0).sum())
    return len(mb)


class Learner:
    """One rank of a trainable model. Methods are phases the driver runs on every rank at once."""

    def __init__(self, cfg: LearnerConfig, ctx: RankContext) -> None:
        setup_rank(ctx)
        torch.manual_seed(cfg.seed)
        self.cfg, self.ctx = cfg, ctx
        self.device = torch.device("cuda", 0) if ctx.backend == "nccl" else torch.device("cpu")
        self.module = load_model(cfg.init_path, cfg.model_kind, torch_dtype(cfg.dtype)).to(self.device)
        self.model = _wrap_parallel(self.module, cfg.parallel, self.device)
        self.optimizer = build_optimizer(self.module, cfg.optim)
        self.autocast_bf16 = resolve_autocast_bf16(cfg.autocast_bf16, self.device, "learner autocast_bf16")
        self.step = 0  # optimizer steps taken (drives the LR schedule)
        self.version = 0  # weight version: +1 per optimizer step, reported by generators after a sync
        self.total_steps: int | None = None

    def precision(self) -> str:
        """What the forward passes run in on this rank ("bf16 autocast" or the parameter dtype), after
        `autocast_bf16: auto` was resolved on this rank's device."""
        return "bf16 autocast" if self.autocast_bf16 else str(self.cfg.dtype)

    # ----------------------------------------------------------------------------- training
    def set_total_steps(self, n: int) -> None:
        if n <= 0:
            raise ValueError(f"set_total_steps: expected a positive number of steps, got {n}")
        self.total_steps = n

    def train_sft(self, batch: TokenBatch) -> dict[str, float]:
        """One optimizer step of next-token loss on loss_mask tokens (SFT, RS, GAtt, distillation)."""
        self._require_kind("lm", "train_sft")
        return self._train_step(batch, sft_objective)

    def train_ppo(self, batch: PPOBatch, clip: float, entropy_coef: float = 0.0) -> dict[str, float]:
        """One optimizer step of the clipped policy loss (section 8: one step per mini-batch)."""
        self._require_kind("lm", "train_ppo")
        return self._train_step(batch, lambda m, mb: ppo_objective(m, mb, clip, entropy_coef))

    def train_value(self, batch: PPOBatch, clip: float | None) -> dict[str, float]:
        self._require_kind("scalar", "train_value")
        return self._train_step(batch, lambda m, mb: value_objective(m, mb, clip))

    def train_ranking(self, batch: PairBatch, aux_weight: float = 0.0) -> dict[str, float]:
        """One step of the margin ranking loss (+ safety auxiliary loss), section 6."""
        self._require_kind("scalar", "train_ranking")
        return self._train_step(batch.by_length(), lambda m, mb: ranking_objective(m, mb, aux_weight))

    def _train_step(self, batch: Any, objective: Callable[[nn.Module, Any], MicroResult]) -> dict[str, float]:
        t0 = time.perf_counter()
        micro = batch.to(self.device).micro_batches(self.cfg.micro_batch_size)
        n_global = self._global_units(micro)
        # DDP averages gradients over ranks, so each rank's share is scaled back up by the world size.
        scale = (self.ctx.world_size if dist.is_initialized() else 1) / n_global
        self.model.train()
        results = []
        for i, mb in enumerate(micro):
            # DDP all-reduces gradients only in the last backward; earlier ones just accumulate.
            sync = i == len(micro) - 1 or not isinstance(self.model, DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with self._autocast():  # forward only: autocast does not belong around backward
                    res = objective(self.model, mb)
                (res.loss * (res.count * scale)).backward()
            results.append(res)
        stats = self._reduce_stats(results, n_global)
        stats |= self._optimizer_step()
        stats["units"] = float(n_global)
        stats["time_s"] = time.perf_counter() - t0
        return stats

    def _global_units(self, micro: list) -> int:
        """Units summed over ranks; also checks every rank runs the same number of backward passes."""
        # Collectives run on self.device: NCCL only reduces GPU tensors.
        counts = torch.tensor([sum(_units(mb) for mb in micro), len(micro), -len(micro)],
                              dtype=torch.float64, device=self.device)
        if dist.is_initialized():
            total = counts[:1].clone()
            dist.all_reduce(total)
            extremes = counts[1:].clone()
            dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
            if extremes[0] != -extremes[1]:
                raise ValueError(
                    f"ranks got unequal shards ({int(-extremes[1])} to {int(extremes[0])} micro-batches); "
                    "shard batches with ActorGroup.shard so every rank has the same number of rows"
                )
            counts[0] = total[0]
        if counts[0] == 0:
            raise ValueError("training batch has no trainable unit (every mask is 0 on every rank)")
        return int(counts[0])

    def _reduce_stats(self, results: list[MicroResult], n_global: int) -> dict[str, float]:
        """Unit-weighted means over all micro-batches of all ranks; ratios reduce num and den apart."""
        keys = sorted({k for r in results for k in r.sums})
        ratio_keys = sorted({k for r in results for k in r.ratios})
        if dist.is_initialized() and self.ctx.world_size > 1:
            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, (keys, ratio_keys))
            keys = sorted({k for ks, _ in gathered for k in ks})
            ratio_keys = sorted({k for _, rs in gathered for k in rs})
        values = [sum(r.sums.get(k, 0.0) for r in results) for k in keys]
        for k in ratio_keys:
            values += [sum(r.ratios.get(k, (0.0, 0.0))[i] for r in results) for i in (0, 1)]
        vec = torch.tensor(values, dtype=torch.float64, device=self.device)
        if dist.is_initialized():
            dist.all_reduce(vec)
        vec = vec.cpu()
        out = {k: float(vec[i]) / n_global for i, k in enumerate(keys)}
        for j, k in enumerate(ratio_keys):
            num, den = float(vec[len(keys) + 2 * j]), float(vec[len(keys) + 2 * j + 1])
            if den > 0:
                out[k] = num / den
        return out

    def _optimizer_step(self) -> dict[str, float]:
        lr = self.cfg.optim.lr * lr_factor(self.step, self.total_steps, self.cfg.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clip = self.cfg.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.version += 1
        return {"lr": lr, "grad_norm": float(norm), "step": float(self.step)}

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16)

    def _require_kind(self, kind: str, method: str) -> None:
        if self.cfg.model_kind != kind:
            raise ValueError(f"{method} needs model_kind {kind!r}; this learner holds {self.cfg.model_kind!r}")

    # ---------------------------------------------------------------------------- inference
    def logprobs(self, batch: TokenBatch) -> torch.Tensor:
        """Log-probs of tokens[:, 1:] under the current policy -> [B, T-1] (old log-probs for PPO)."""
        self._require_kind("lm", "logprobs")
        return self._infer(batch, forward_logprobs)

    def values(self, batch: TokenBatch) -> torch.Tensor:
        """Critic values aligned with tokens[:, 1:] -> [B, T-1]."""
        self._require_kind("scalar", "values")
        return self._infer(batch, forward_values)

    def score(self, tokens: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """Scalar head at last_index of each row -> [B] raw scores (sigmoid gives the paper's score)."""
        self._require_kind("scalar", "score")
        self.module.eval()
        size = self.cfg.micro_batch_size
        with self._autocast():
            parts = [forward_scores(self.module, tokens[i : i + size].to(self.device),
                                    last_index[i : i + size].to(self.device))
                     for i in range(0, tokens.shape[0], size)]
        return torch.cat(parts).cpu()

    def score_pairs(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of each pair's chosen and rejected answer -> ([N], [N]) raw, in the batch's order.

        The pairs run in order of length (`PairBatch.by_length`), each micro-batch cut to its own width,
        and as one shared-prefix row per pair when the batch has prefix_len: the held-out pairs of the
        demo's RMs cost half the tokens of scoring each answer in its own row.
        """
        self._require_kind("scalar", "score_pairs")
        self.module.eval()
        order = batch.length_order()  # [N]
        chosen, rejected = [], []
        with self._autocast():
            for mb in batch.take(order).to(self.device).micro_batches(self.cfg.micro_batch_size):
                c, r = forward_pair_scores(self.module, mb)
                chosen.append(c.float().cpu())
                rejected.append(r.float().cpu())
        back = torch.argsort(order)  # the inverse permutation: each pair back to its place in the batch
        return torch.cat(chosen)[back], torch.cat(rejected)[back]

    def _infer(self, batch: TokenBatch, fn: Callable[[nn.Module, TokenBatch], torch.Tensor]) -> torch.Tensor:
        # The unwrapped module: DDP adds nothing to a no-grad forward.
        self.module.eval()
        with self._autocast():
            parts = [fn(self.module, mb) for mb in batch.to(self.device).micro_batches(self.cfg.micro_batch_size)]
        return torch.cat(parts).cpu()

    # --------------------------------------------------------------------------- weights, IO
    def hf_weights(self) -> dict[str, torch.Tensor]:
        """HF-named tensors of the (unwrapped) model, on CPU, for weight sync to vLLM."""
        return {k: v.detach().cpu().contiguous() for k, v in hf_state_dict(self.module).items()}

    def weight_version(self) -> int:
        return self.version

    def save(self, path: str, tokenizer_path: str | None = None) -> str:
        """Rank 0 writes the HF checkpoint (atomically) and then the resume state; others wait."""
        if self.ctx.rank == 0:
            tokenizer = Tokenizer(tokenizer_path) if tokenizer_path else None
            save_pretrained(self.module, path, tokenizer=tokenizer)
            counters = {"step": self.step, "weight_version": self.version, "total_steps": self.total_steps}
            save_train_state(Path(path) / TRAIN_STATE_DIR, self.optimizer, counters)
        if dist.is_initialized():
            dist.barrier()
        return path

    def load_train_state(self, path: str) -> dict[str, Any]:
        """Resume: optimizer state and counters saved by `save` (the weights come from init_path)."""
        counters = load_train_state(Path(path) / TRAIN_STATE_DIR, self.optimizer)
        self.step, self.version = int(counters["step"]), int(counters["weight_version"])
        self.total_steps = counters["total_steps"]
        return counters
