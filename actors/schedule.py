"""AdamW and the learning-rate schedule of the Llama 2 recipes (LLAMA2_SPEC.md sections 3, 4, 6, 8).

Pretraining/SFT/RM: linear warmup then cosine decay to `min_lr_ratio` (10%) of the peak; the RM
warmup is 3% of the steps with a minimum of 5, hence `max(warmup_steps, warmup_ratio * total)`.
PPO: constant LR. The schedule is a pure function of the step, so resuming needs only the step.

Resume files (`save_train_state` / `load_train_state`) are written by this project only: optimizer
tensors in safetensors (no pickle, so loading cannot run code), everything else in JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from actors.config import OptimConfig
from model.atomic import atomic_directory

__all__ = ["build_optimizer", "warmup_steps", "lr_factor", "save_train_state", "load_train_state"]

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "train_state.json"

_SCHEDULES = ("cosine", "constant")


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW(lr, betas, eps, weight_decay); decay applies to matrices only.

    The paper gives weight decay 0.1 but not which tensors it covers; RMSNorm gains (1-D) are kept
    out, as is usual for Llama-family training, so decay does not pull the norms towards 0.
    """
    if cfg.lr <= 0:
        raise ValueError(f"OptimConfig.lr must be > 0, got {cfg.lr}")
    if cfg.schedule not in _SCHEDULES:
        raise ValueError(f"OptimConfig.schedule {cfg.schedule!r} is not one of {_SCHEDULES}")
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def warmup_steps(cfg: OptimConfig, total_steps: int | None) -> int:
    """The larger of the fixed and the relative warmup (the RM recipe: 3% with a minimum of 5)."""
    relative = 0 if total_steps is None else math.ceil(cfg.warmup_ratio * total_steps)
    return max(cfg.warmup_steps, relative)


def lr_factor(step: int, total_steps: int | None, cfg: OptimConfig) -> float:
    """Multiplier of the peak LR for the optimizer step number `step` (0-based).

    Warmup ramps linearly to 1 at the last warmup step ((step + 1) / warmup, so the first step
    already moves the weights); cosine then decays to min_lr_ratio at `total_steps`.
    """
    if cfg.schedule not in _SCHEDULES:
        raise ValueError(f"OptimConfig.schedule {cfg.schedule!r} is not one of {_SCHEDULES}")
    if cfg.schedule == "cosine" and total_steps is None:
        raise ValueError("cosine schedule needs the number of steps: call set_total_steps(n) before training")
    if cfg.warmup_ratio > 0 and total_steps is None:
        raise ValueError("warmup_ratio needs the number of steps: call set_total_steps(n) before training")
    warm = warmup_steps(cfg, total_steps)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    assert total_steps is not None
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def save_train_state(path: str | Path, optimizer: torch.optim.Optimizer, counters: dict[str, Any]) -> Path:
    """Write optimizer state + JSON counters (step, weight version, total steps) atomically to `path`."""
    sd = optimizer.state_dict()
    tensors = {
        f"state.{idx}.{name}": value.detach().contiguous().cpu()
        for idx, per_param in sd["state"].items()
        for name, value in per_param.items()
    }
    meta = {"param_groups": sd["param_groups"], "counters": counters}
    with atomic_directory(path) as tmp:
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return Path(path)


def load_train_state(path: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimizer from `save_train_state` files; returns the counters."""
    root = Path(path)
    for name in (OPTIMIZER_FILE, STATE_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"train state {root} has no {name}; expected files written by save_train_state")
    meta = json.loads((root / STATE_FILE).read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(root / OPTIMIZER_FILE)).items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])  # JSON has no tuples
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except ValueError as e:
        raise ValueError(f"train state {root} does not fit this model's optimizer: {e}") from e
    return meta["counters"]
