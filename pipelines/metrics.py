"""TensorBoard metrics with stable names, phase timers, and progress bars (DESIGN.md "Monitoring").

Every tag is `{stage}/{name}`: `ppo/reward_mean`, `ppo/time/generate`, `sft/throughput/tokens_per_s`.
Stages log through one `MetricsLogger` per run so the TensorBoard view groups by stage.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _tag(stage: str, name: str) -> str:
    # a stage may name a sub-phase ("reward_models/rm_safety"), but never an empty path segment
    if not stage or "" in stage.split("/"):
        raise ValueError(f"metrics: stage must be non-empty names joined by single '/', got {stage!r}")
    if not name:
        raise ValueError(f"metrics: empty metric name for stage {stage!r}")
    return f"{stage}/{name}"


def _as_float(tag: str, value: object) -> float:
    """A scalar as float; tensors/arrays of one element are accepted, anything else is an error."""
    try:
        x = float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError) as e:
        raise ValueError(f"metrics: {tag} must be a single number, got {value!r}") from e
    return x


class MetricsLogger:
    """A `SummaryWriter` under `log_dir` whose tags are always `{stage}/{name}`.

    `timer` also accumulates seconds per (stage, phase) in `totals`, which stages put in their
    manifest and the final report (time per phase: generate, score, train, sync).
    """

    def __init__(self, log_dir: str | Path, flush_secs: int = 10) -> None:
        if flush_secs <= 0:
            raise ValueError(f"MetricsLogger: flush_secs must be > 0, got {flush_secs}")
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)
        self.totals: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def scalars(self, stage: str, values: Mapping[str, object], step: int) -> None:
        for name, value in values.items():
            tag = _tag(stage, name)
            self._writer.add_scalar(tag, _as_float(tag, value), global_step=step)

    def histogram(self, stage: str, name: str, values: object, step: int) -> None:
        tag = _tag(stage, name)
        arr = np.asarray(values, dtype=np.float64).reshape(-1)  # [N]
        if arr.size == 0:
            raise ValueError(f"metrics: histogram {tag} got no values")
        if not np.isfinite(arr).all():
            raise ValueError(f"metrics: histogram {tag} has non-finite values")
        self._writer.add_histogram(tag, arr, global_step=step)

    def text(self, stage: str, name: str, text: str, step: int) -> None:
        self._writer.add_text(_tag(stage, name), text, global_step=step)

    @contextmanager
    def timer(self, stage: str, phase: str, step: int | None = None) -> Iterator[None]:
        """Log `{stage}/time/{phase}` seconds of the block (at `step`, or the phase's call count)."""
        tag = _tag(stage, f"time/{phase}")
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.totals[tag] += seconds
            self._counts[tag] += 1
            at = self._counts[tag] - 1 if step is None else step
            self._writer.add_scalar(tag, seconds, global_step=at)

    def throughput(self, stage: str, name: str, count: float, seconds: float, step: int) -> float:
        """Log `{stage}/throughput/{name}` = count / seconds (e.g. tokens per second) and return it."""
        tag = _tag(stage, f"throughput/{name}")
        if seconds <= 0:
            raise ValueError(f"metrics: {tag} needs seconds > 0, got {seconds}")
        rate = float(count) / float(seconds)
        self._writer.add_scalar(tag, rate, global_step=step)
        return rate

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal and never under CI (logs stay readable)."""
    if os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, enabled: bool = True) -> Iterable[T]:
    """`tqdm` over `iterable`; off when `enabled` is False (logging.progress), stderr is not a TTY, or CI is set."""
    return tqdm(iterable, desc=desc, total=total, disable=not (enabled and progress_enabled()), dynamic_ncols=True)
