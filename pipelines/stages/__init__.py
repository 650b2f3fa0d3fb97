"""One driver per stage of the Llama 2 method (DESIGN.md "Stages"); each reads top to bottom.

Every driver module exposes `run(cfg: Config, run: RunDir) -> dict` returning the stage's metrics;
`pipelines.llama2.run_stage` writes the manifest around it. Modules are imported lazily so that
`llama2-rlhf stage=data` does not import torch-heavy drivers it does not need.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# stage name -> module under pipelines.stages (order: pipelines.config.STAGE_ORDER)
STAGE_MODULES: dict[str, str] = {
    "data": "data",
    "pretrain": "pretrain",
    "sft": "sft",
    "reward_models": "reward_models",
    "rejection_sampling": "rejection_sampling",
    "ppo": "ppo",
    "gatt": "gatt",
    "context_distillation": "context_distillation",
    "evaluate": "evaluate",
}


def stage_module(name: str) -> ModuleType:
    if name not in STAGE_MODULES:
        raise ValueError(f"unknown stage {name!r}; expected one of {list(STAGE_MODULES)}")
    return importlib.import_module(f"pipelines.stages.{STAGE_MODULES[name]}")
