"""`llama2-rlhf`: compose the Hydra config, validate it, run the stage or pipeline it names.

    llama2-rlhf pipeline=llama2 run_dir=runs/demo
    llama2-rlhf stage=ppo reward=function run_dir=runs/demo
    llama2-rlhf --cfg job run_dir=x pipeline=llama2      # print the composed config

Hydra writes its own files (composed config, overrides, log) under run_dir/.hydra/<time>/ and
keeps the working directory (conf/config.yaml).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipelines.config import register
from pipelines.registry import run_config
from pipelines.validation import ConfigError, to_config, validate

log = logging.getLogger(__name__)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def _run(dcfg: DictConfig) -> None:
    try:
        cfg = to_config(dcfg)
        validate(cfg)  # before any actor starts
    except ConfigError as e:
        print(f"llama2-rlhf: {e}", file=sys.stderr)
        sys.exit(2)
    logging.getLogger().setLevel(cfg.logging.level)
    run_config(cfg)
    report = Path(cfg.run_dir) / "report.md"
    if cfg.pipeline is not None and report.exists():
        print(report.read_text(encoding="utf-8"))  # the CLI's own output: the report table


def main() -> None:
    register()
    _run()


if __name__ == "__main__":
    main()
