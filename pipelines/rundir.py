"""The run directory: where every stage reads its inputs and writes its outputs.

Layout (one place, so drivers never build paths by hand):

    run_dir/
      data/                 the dataset bundle (Parquet) and per-stage generated datasets
      tokenizer/            tokenizer.model (+ tokenizer_config.json)
      checkpoints/<name>/   HF-format checkpoints (config.json + safetensors)
      tb/                   TensorBoard event files
      manifests/<stage>.json  inputs, config hash, status, outputs, metrics of each stage
      eval/<name>.parquet   evaluation results per checkpoint
      report.md, report.json

A stage is finished when its manifest says `status: done` with the same config hash; the
pipeline then skips it (resume after the last finished stage, DESIGN.md "Data").
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary sibling and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def config_hash(obj: Any) -> str:
    """A stable short hash of a JSON-serialisable config section."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def create(cls, root: str | Path) -> "RunDir":
        if not str(root):
            raise ValueError("run_dir is empty: set run_dir=<directory> on the command line")
        r = cls(Path(root).resolve())
        for sub in ("data", "tokenizer", "checkpoints", "tb", "manifests", "eval"):
            (r.root / sub).mkdir(parents=True, exist_ok=True)
        return r

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tb(self) -> Path:
        return self.root / "tb"

    def checkpoint(self, name: str) -> Path:
        return self.root / "checkpoints" / name

    def eval_results(self, name: str) -> Path:
        return self.root / "eval" / f"{name}.parquet"

    def manifest_path(self, stage: str) -> Path:
        return self.root / "manifests" / f"{stage}.json"

    def read_manifest(self, stage: str) -> dict[str, Any] | None:
        path = self.manifest_path(stage)
        if not path.exists():
            return None
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: manifest is not valid JSON ({e}); delete it to redo stage {stage!r}") from e
        if not isinstance(body, dict):
            raise ValueError(f"{path}: manifest is not a JSON object (got {type(body).__name__}); "
                             f"delete it to redo stage {stage!r}")
        return body

    def is_done(self, stage: str, cfg_hash: str) -> bool:
        m = self.read_manifest(stage)
        return bool(m) and m.get("status") == "done" and m.get("config_hash") == cfg_hash

    def write_manifest(self, stage: str, *, status: str, cfg_hash: str, inputs: dict[str, Any],
                       outputs: dict[str, Any], metrics: dict[str, Any] | None = None,
                       started: float | None = None) -> None:
        now = time.time()
        body = {
            "stage": stage,
            "status": status,
            "config_hash": cfg_hash,
            "inputs": inputs,
            "outputs": outputs,
            "metrics": metrics or {},
            "started": started,
            "finished": now,
            "seconds": None if started is None else round(now - started, 2),
        }
        atomic_write_text(self.manifest_path(stage), json.dumps(body, indent=2, sort_keys=True, default=str))

    def require(self, path: Path, produced_by: str) -> Path:
        """Fail early with a clear message if an input of a stage is missing."""
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: it is produced by stage {produced_by!r}; run that stage first "
                f"(stage={produced_by} run_dir={self.root}) or the whole pipeline (pipeline=llama2)"
            )
        return path
