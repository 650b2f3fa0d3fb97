"""The `llama2` pipeline: every stage in order into one run directory, resumable.

A stage whose manifest says `done` with the same config hash is skipped, so re-running the same
command resumes after the last finished stage and a finished run is not redone. The hash of a stage
covers its own config section and those of every earlier stage (plus model, data, reward, seed), so
changing an early stage redoes everything after it.
"""
from __future__ import annotations

import logging
import time
import traceback
from dataclasses import asdict
from typing import Any

from omegaconf import OmegaConf

from pipelines.common import shared_generators
from pipelines.config import PIPELINES, STAGE_ORDER, Config
from pipelines.rundir import RunDir, config_hash
from pipelines.stages import stage_module

log = logging.getLogger(__name__)
SHARED_SECTIONS = ("seed", "model", "data", "reward")


def _plain(cfg: Config) -> dict[str, Any]:
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return asdict(cfg)


def stage_hash(cfg: Config, stage: str) -> str:
    plain = _plain(cfg)
    upto = STAGE_ORDER[: STAGE_ORDER.index(stage) + 1]
    sections = {k: plain[k] for k in SHARED_SECTIONS}
    sections.update({s: plain.get(s) for s in upto if s in plain})
    return config_hash(sections)


def ensure_ray(cfg: Config) -> None:
    """Join the configured Ray cluster, or start a local one (2 cores: everything colocated)."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if cfg.resources.ray_address:
        kwargs["address"] = cfg.resources.ray_address
    elif cfg.resources.num_cpus is not None:
        kwargs["num_cpus"] = cfg.resources.num_cpus
    # actors import the project by module name: ship the working directory only to a remote cluster
    ray.init(**kwargs)


def run_stage(cfg: Config, run: RunDir, stage: str, *, skip_done: bool) -> dict[str, Any]:
    h = stage_hash(cfg, stage)
    if skip_done and run.is_done(stage, h):
        log.info("stage %s: already done (manifest %s), skipped", stage, run.manifest_path(stage))
        return run.read_manifest(stage)["metrics"]  # type: ignore[index]
    started = time.time()
    inputs = {"run_dir": str(run.root), "config": {k: _plain(cfg).get(k) for k in (stage, *SHARED_SECTIONS)}}
    log.info("stage %s: start", stage)
    if stage != "data":
        ensure_ray(cfg)
    run.write_manifest(stage, status="running", cfg_hash=h, inputs=inputs, outputs={}, started=started)
    try:
        metrics = stage_module(stage).run(cfg, run)
    except BaseException as e:
        run.write_manifest(stage, status="failed", cfg_hash=h, inputs=inputs,
                           outputs={"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]},
                           started=started)
        raise
    outputs = {"checkpoints": sorted(p.name for p in (run.root / "checkpoints").iterdir()),
               "data": sorted(p.name for p in run.data.iterdir())}
    run.write_manifest(stage, status="done", cfg_hash=h, inputs=inputs, outputs=outputs, metrics=metrics,
                       started=started)
    log.info("stage %s: done in %.1fs", stage, time.time() - started)
    return metrics


def run_pipeline(cfg: Config, name: str) -> dict[str, Any]:
    from pipelines.report import write_report

    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; expected one of {list(PIPELINES)}")
    run = RunDir.create(cfg.run_dir)
    with shared_generators():  # one vLLM pool for every stage that samples (pipelines.common)
        for stage in PIPELINES[name]:
            run_stage(cfg, run, stage, skip_done=True)
    return write_report(run)
