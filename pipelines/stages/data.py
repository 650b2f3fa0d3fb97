"""Stage 0: the dataset bundle every later stage reads (the built-in world, or imported user files)."""
from __future__ import annotations

from typing import Any

from pipelines.config import Config
from pipelines.rundir import RunDir


def run(cfg: Config, run: RunDir) -> dict[str, Any]:
    if cfg.data.source == "world":
        from pipelines.config import world_bundle_config
        from pipelines.world.bundle import write_bundle

        return write_bundle(run.data, world_bundle_config(cfg.data), seed=cfg.seed)
    raise NotImplementedError(
        f"data.source={cfg.data.source!r}: importing user files into a run is not wired into the pipeline yet; "
        "convert them with pipelines.data.importers and point the stages at the resulting Parquet files")
