"""The frozen reference pi_0 (LLAMA2_SPEC.md section 8: the KL penalty is measured against it).

Also serves any frozen scalar model (e.g. a reward model's `score`). No optimizer, no process group:
ranks of a reference group each score their own shard independently (ActorGroup backend=None).
"""

from __future__ import annotations

import torch

from actors.batch import TokenBatch
from actors.config import LearnerConfig
from actors.group import RankContext, setup_rank
from actors.learner import load_model, torch_dtype
from actors.objectives import forward_logprobs, forward_scores, forward_values
from model.precision import resolve_autocast_bf16

__all__ = ["Reference"]


class Reference:
    """A frozen model: `logprobs` for an LM, `values`/`score` for a scalar model."""

    def __init__(self, cfg: LearnerConfig, ctx: RankContext) -> None:
        setup_rank(ctx)
        self.cfg = cfg
        self.device = torch.device("cuda", 0) if cfg.resources.num_gpus > 0 else torch.device("cpu")
        self.model = load_model(cfg.init_path, cfg.model_kind, torch_dtype(cfg.dtype)).to(self.device).eval()
        self.model.requires_grad_(False)
        self.autocast_bf16 = resolve_autocast_bf16(cfg.autocast_bf16, self.device, "reference autocast_bf16")

    def logprobs(self, batch: TokenBatch) -> torch.Tensor:
        """log pi_0(tokens[:, t+1] | prefix) -> [B, T-1]."""
        self._require_kind("lm", "logprobs")
        return self._chunks(batch, forward_logprobs)

    def values(self, batch: TokenBatch) -> torch.Tensor:
        """Scalar output aligned with tokens[:, 1:] -> [B, T-1]."""
        self._require_kind("scalar", "values")
        return self._chunks(batch, forward_values)

    def score(self, tokens: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """Scalar head at last_index of each row -> [B] raw scores."""
        self._require_kind("scalar", "score")
        size = self.cfg.micro_batch_size
        with self._autocast():
            parts = [forward_scores(self.model, tokens[i : i + size].to(self.device),
                                    last_index[i : i + size].to(self.device))
                     for i in range(0, tokens.shape[0], size)]
        return torch.cat(parts).cpu()

    def _chunks(self, batch: TokenBatch, fn) -> torch.Tensor:
        with self._autocast():
            parts = [fn(self.model, mb) for mb in batch.to(self.device).micro_batches(self.cfg.micro_batch_size)]
        return torch.cat(parts).cpu()

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16)

    def _require_kind(self, kind: str, method: str) -> None:
        if self.cfg.model_kind != kind:
            raise ValueError(
                f"Reference.{method} needs model_kind {kind!r}; this reference holds {self.cfg.model_kind!r}"
            )
