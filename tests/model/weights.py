"""Shared by the model tests (imported as `tests.model.weights`, like tests.actors.reward_rules)."""
from __future__ import annotations

import torch


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights far from init (std 0.3, norm gains around 1) so that every path changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.2 * noise if p.dim() == 1 else 0.3 * noise)
    return model.eval()
