"""Configuration checks that run before any actor starts (STYLE.md habit 11).

Composition already rejects unknown keys and wrong types (the structured schema in
pipelines/config.py); `compose_config` / `to_config` re-raise those as `ConfigError`s whose message
names the key. `validate` then catches impossible combinations: batch sizes that learner ranks cannot
split, sampling lengths beyond the engine's context, a temperature schedule of the wrong length,
reward scorers whose files or functions do not exist. Every problem is reported at once, each line
starting with the dotted key.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from pipelines.config import PIPELINES, STAGE_ORDER, Config, register
from pipelines.validation_rules import check_all

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A bad configuration: `problems` holds one "key: what is wrong" line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


def _omegaconf_problem(err: BaseException) -> str:
    """'key: message' from an OmegaConf error (they carry `full_key`), else the plain message."""
    key = getattr(err, "full_key", None)
    if isinstance(err, MissingMandatoryValue) and key:
        return f"{key}: is required (set {key}=...)"
    msg = str(getattr(err, "msg", None) or err).split("\n")[0]
    return f"{key}: {msg}" if key else msg


def _wrap(err: BaseException) -> ConfigError:
    # Hydra wraps the OmegaConf error that names the key in __cause__; report the key first and
    # Hydra's own summary line (e.g. "Error merging override ppo.iterations=abc") after it.
    causes = [err]
    while causes[-1].__cause__ is not None and len(causes) < 5:
        causes.append(causes[-1].__cause__)
    keyed = [c for c in causes if isinstance(c, OmegaConfBaseException) and getattr(c, "full_key", None)]
    if not keyed:
        return ConfigError([" ".join(str(err).split())])
    problem = _omegaconf_problem(keyed[-1])
    if keyed[-1] is not err:
        problem += f" ({str(err).splitlines()[0]})"
    return ConfigError([problem])


def to_config(cfg: DictConfig | Config) -> Config:
    """The typed `Config` object of a composed DictConfig (interpolations resolved)."""
    if isinstance(cfg, Config):
        return cfg
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise _wrap(e) from e
    if not isinstance(obj, Config):
        raise ConfigError([f"config root is {type(obj).__name__}, expected the pipelines.config.Config schema"])
    return obj


def compose_config(overrides: Sequence[str] = (), config_dir: str | Path = CONF_DIR) -> Config:
    """Compose `conf/config.yaml` with command-line style overrides, as the CLI does, and validate."""
    register()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            dcfg = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise _wrap(e) from e
    cfg = to_config(dcfg)
    validate(cfg)
    return cfg


def stages_to_run(cfg: Config) -> list[str]:
    """The stages this config runs: the pipeline's, in order, or the single `stage`."""
    if cfg.pipeline is not None:
        return list(PIPELINES[cfg.pipeline])
    return [cfg.stage] if cfg.stage is not None else []


def _check_selection(cfg: Config) -> list[str]:
    problems = []
    if not cfg.run_dir:
        problems.append("run_dir: is required (set run_dir=<directory>)")
    if cfg.stage is not None and cfg.stage not in STAGE_ORDER:
        problems.append(f"stage: unknown stage {cfg.stage!r}; expected one of {list(STAGE_ORDER)}")
    if cfg.pipeline is not None and cfg.pipeline not in PIPELINES:
        problems.append(f"pipeline: unknown pipeline {cfg.pipeline!r}; expected one of {sorted(PIPELINES)}")
    if cfg.stage is None and cfg.pipeline is None:
        problems.append("stage: nothing to run; set stage=<name> (one of "
                        f"{list(STAGE_ORDER)}) or pipeline=llama2")
    if cfg.stage is not None and cfg.pipeline is not None:
        problems.append(f"stage: stage={cfg.stage} and pipeline={cfg.pipeline} are both set; choose one")
    return problems


def validate(cfg: DictConfig | Config) -> None:
    """Raise ConfigError listing every problem of `cfg`; return None when it can run."""
    cfg = to_config(cfg)
    problems = _check_selection(cfg)
    if not problems:
        run_dir = Path(os.path.abspath(cfg.run_dir))
        problems += check_all(cfg, stages_to_run(cfg), run_dir)
    if problems:
        raise ConfigError(problems)
