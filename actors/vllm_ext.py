"""vLLM worker extension: in-place weight reload from HF-named tensors (ENVIRONMENT.md, "Weight updates").

vLLM's CPU worker repacks linear weights after loading, so `model.load_weights` into a running engine
fails; the model runner's `reload_weights` re-runs the loader in place and works on CPU and GPU.
The method is deliberately not called `update_weights`: the worker already has one (vLLM's own
NCCL/IPC weight-transfer API). vLLM mixes this class into its worker, so `self` is the worker.
"""

from __future__ import annotations

import logging

import torch

__all__ = ["WeightReloadExtension"]

log = logging.getLogger(__name__)


class WeightReloadExtension:
    """Mixed into vLLM's worker via LLM(worker_extension_cls="actors.vllm_ext.WeightReloadExtension")."""

    def reload_from_tensors(self, named_tensors: dict[str, torch.Tensor]) -> int:
        """Load every tensor (HF Llama names) into the running model; returns how many were given."""
        if not isinstance(named_tensors, dict) or not named_tensors:
            got = type(named_tensors).__name__
            raise ValueError(f"reload_from_tensors: expected a non-empty dict of HF-named tensors, got {got}")
        self.model_runner.reload_weights(weights_iterator=iter(named_tensors.items()))  # type: ignore[attr-defined]
        log.info("reloaded %d tensors in place", len(named_tensors))
        return len(named_tensors)
