"""What `llama2-rlhf` runs for a composed config: one stage (`stage=`) or a pipeline (`pipeline=`).

`STAGES` maps every stage name to a runner; each goes through `pipelines.llama2.run_stage`, which
imports the driver `pipelines/stages/<name>.py` lazily and writes the stage's manifest around it.
A stage named on the command line always runs (a finished manifest is redone); a pipeline skips
finished stages and so resumes where it stopped (`pipelines.llama2.run_pipeline`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipelines.config import STAGE_ORDER, Config
from pipelines.llama2 import run_pipeline, run_stage
from pipelines.rundir import RunDir

log = logging.getLogger(__name__)

StageRunner = Callable[[Config], dict[str, Any]]


def _stage_runner(name: str) -> StageRunner:
    def run(cfg: Config) -> dict[str, Any]:
        return run_stage(cfg, RunDir.create(cfg.run_dir), name, skip_done=False)

    run.__name__ = f"run_{name}"
    return run


STAGES: dict[str, StageRunner] = {name: _stage_runner(name) for name in STAGE_ORDER}


def run_config(cfg: Config) -> dict[str, Any]:
    """Run the configured pipeline (its report) or single stage (its metrics)."""
    if cfg.pipeline is not None:
        return run_pipeline(cfg, cfg.pipeline)
    if cfg.stage is None:
        raise ValueError("nothing to run: set stage=<name> or pipeline=llama2")
    return STAGES[cfg.stage](cfg)
