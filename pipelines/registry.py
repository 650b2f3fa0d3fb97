"""Stage name -> runner, and what `llama2-rlhf` runs for a composed config.

Stage drivers live in `pipelines/stages/<name>.py` and expose `run(cfg: Config, run: RunDir) -> dict`
(their metrics). They are imported lazily, so composing and validating a config never loads Ray or
vLLM. A stage without a driver module raises NotImplementedError naming it.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from pipelines.config import PIPELINES, STAGE_ORDER, Config
from pipelines.rundir import RunDir

log = logging.getLogger(__name__)

StageRunner = Callable[[Config], dict[str, Any]]


def _import_if_present(module_name: str) -> ModuleType | None:
    """The module, or None if that module itself does not exist (errors inside it propagate)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            return None
        raise


def _driver_stage(name: str) -> StageRunner:
    def run(cfg: Config) -> dict[str, Any]:
        module_name = f"pipelines.stages.{name}"
        module = _import_if_present(module_name)
        if module is None:
            raise NotImplementedError(f"stage {name} is not implemented yet (no module {module_name})")
        return module.run(cfg, RunDir.create(cfg.run_dir))

    return run


STAGES: dict[str, StageRunner] = {name: _driver_stage(name) for name in STAGE_ORDER}


def run_config(cfg: Config) -> dict[str, dict[str, Any]]:
    """Run the configured pipeline or single stage; returns each stage's metrics by stage name.

    A pipeline module `pipelines.<name>` with `run(cfg)` (manifests, resume) takes over when it
    exists; otherwise the pipeline's stages run in order.
    """
    if cfg.pipeline is not None:
        module = _import_if_present(f"pipelines.{cfg.pipeline}")
        if module is not None and hasattr(module, "run"):
            return module.run(cfg)
        stages = PIPELINES[cfg.pipeline]
    else:
        stages = (cfg.stage,)
    results: dict[str, dict[str, Any]] = {}
    for name in stages:
        log.info("stage %s: start", name)
        results[name] = STAGES[name](cfg)
        log.info("stage %s: done %s", name, results[name])
    return results
