"""Reward-model scorers: one learned RM, or the Llama 2 helpfulness + safety pair.

- learned: reward = raw scalar r of a ScalarModel at the last token of prompt + response, and
  "score" = sigmoid(r) (LLAMA2_SPEC.md section 6: the RM score is reported as sigmoid(r)).
- llama2: Rc = Rs if IS_SAFETY or Rs < threshold else Rh on the sigmoid scores (section 8);
  "combined" = Rc in [0, 1] and "reward" = logit(Rc). Whitening is NOT applied here: it needs the
  statistics of the whole PPO batch, so the PPO driver whitens "reward" over each iteration's rollouts.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from actors.scorers import ScoreRequest, ScorerError, require_requests
from algorithms import combine_safety_helpfulness, logit
from model import ScalarModel, load_pretrained
from model.precision import resolve_autocast_bf16

__all__ = ["LearnedScorer", "Llama2PairScorer"]




class LearnedScorer:
    """A ScalarModel checkpoint; reward = r(prompt + response) at the last token."""

    def __init__(self, path: str, batch_size: int = 32, device: str | None = None,
                 autocast_bf16: bool | str = False) -> None:
        if not path:
            raise ScorerError("LearnedScorer: empty checkpoint path (set reward.scorer.path)")
        if batch_size < 1:
            raise ScorerError(f"LearnedScorer: batch_size must be >= 1, got {batch_size}")
        model = load_pretrained(path)
        if not isinstance(model, ScalarModel):
            raise ScorerError(f"{path}: holds a {type(model).__name__}; a reward model checkpoint must be a "
                              "ScalarModel (config.json architectures: LlamaForSequenceClassification)")
        self.path = path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.max_len = model.args.max_seq_len
        self.vocab_size = model.args.vocab_size
        self.batch_size = batch_size
        self.autocast_bf16 = resolve_autocast_bf16(autocast_bf16, self.device, f"LearnedScorer({path}) autocast_bf16")

    @torch.inference_mode()
    def raw(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        """r at the last token of each prompt + response, as float64 [N]."""
        require_requests("LearnedScorer", requests)
        seqs = [list(r.prompt_tokens) + list(r.response_tokens) for r in requests]
        for i, s in enumerate(seqs):
            if not s:
                raise ScorerError(f"LearnedScorer({self.path}): request {i} has no tokens")
            if len(s) > self.max_len:
                raise ScorerError(f"LearnedScorer({self.path}): request {i} has {len(s)} tokens, more than the "
                                  f"model's max_seq_len={self.max_len}")
            if min(s) < 0 or max(s) >= self.vocab_size:
                raise ScorerError(f"LearnedScorer({self.path}): request {i} has token ids outside "
                                  f"[0, vocab_size={self.vocab_size})")
        out = np.empty(len(seqs), dtype=np.float64)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths share a batch: less padding
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            out[idx] = self._forward([seqs[i] for i in idx])
        return out

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        # Right padding: with causal attention the real tokens never see the pads, so the value at
        # each row's last real token equals the unpadded forward.
        T = max(len(s) for s in seqs)
        tokens = torch.zeros((len(seqs), T), dtype=torch.long)  # [B, T]
        for b, s in enumerate(seqs):
            tokens[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        last = torch.tensor([len(s) - 1 for s in seqs])  # [B]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            values = self.model(tokens.to(self.device)).float().cpu()  # [B, T]
        return values[torch.arange(len(seqs)), last].double().numpy()  # [B]

    def score(self, requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]:
        r = self.raw(requests)
        return {"reward": r, "score": 1.0 / (1.0 + np.exp(-r))}


class Llama2PairScorer:
    """Helpfulness + safety RMs with the paper's piecewise rule (section 3.2.3, eq. for Rc)."""

    def __init__(self, helpfulness_path: str, safety_path: str, threshold: float = 0.15, batch_size: int = 32,
                 autocast_bf16: bool | str = False) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ScorerError(f"Llama2PairScorer: threshold must be in [0, 1], got {threshold}")
        self.helpfulness = LearnedScorer(helpfulness_path, batch_size, autocast_bf16=autocast_bf16)
        self.safety = LearnedScorer(safety_path, batch_size, autocast_bf16=autocast_bf16)
        self.threshold = threshold

    def score(self, requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]:
        rh = torch.from_numpy(self.helpfulness.raw(requests))  # [N]
        rs = torch.from_numpy(self.safety.raw(requests))  # [N]
        h, s = torch.sigmoid(rh), torch.sigmoid(rs)
        is_safety = torch.tensor([bool(r.is_safety) for r in requests], dtype=torch.bool)  # [N]
        rc = combine_safety_helpfulness(s, h, is_safety, self.threshold)  # [N]
        return {
            "reward": logit(rc).numpy(),  # whitened over the batch by the PPO driver, not here
            "combined": rc.numpy(),
            "helpfulness": h.numpy(),
            "safety": s.numpy(),
            "helpfulness_raw": rh.numpy(),
            "safety_raw": rs.numpy(),
        }
