"""MetricsLogger writes real TensorBoard event files; read them back with tensorboard's own reader."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipelines import metrics
from pipelines.metrics import MetricsLogger, progress


def _load(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_scalars_histograms_text_and_timers_round_trip(tmp_path):
    with MetricsLogger(tmp_path / "tb", flush_secs=1) as m:
        m.scalars("ppo", {"reward_mean": 0.5, "kl": torch.tensor(0.25)}, step=0)
        m.scalars("ppo", {"reward_mean": 1.5, "kl": np.float32(0.125)}, step=1)
        m.histogram("ppo", "rewards", [0.0, 1.0, 2.0, 3.0], step=1)
        m.text("ppo", "samples", "[INST] 2+2 [/INST] 4", step=1)
        with m.timer("ppo", "generate"):
            time.sleep(0.02)
        with m.timer("ppo", "generate"):
            pass
        rate = m.throughput("ppo", "tokens_per_s", count=300, seconds=1.5, step=1)
        totals = dict(m.totals)

    acc = _load(tmp_path / "tb")
    tags = acc.Tags()
    assert {"ppo/reward_mean", "ppo/kl", "ppo/time/generate", "ppo/throughput/tokens_per_s"} <= set(tags["scalars"])
    assert [(e.step, e.value) for e in acc.Scalars("ppo/reward_mean")] == [(0, 0.5), (1, 1.5)]
    assert [e.value for e in acc.Scalars("ppo/kl")] == [0.25, 0.125]
    assert rate == 200.0 and acc.Scalars("ppo/throughput/tokens_per_s")[0].value == 200.0

    times = acc.Scalars("ppo/time/generate")
    assert [e.step for e in times] == [0, 1]
    assert times[0].value >= 0.02
    assert totals["ppo/time/generate"] == pytest.approx(times[0].value + times[1].value, rel=1e-5)

    hist = acc.Histograms("ppo/rewards")[0].histogram_value
    assert (hist.min, hist.max, hist.num, hist.sum) == (0.0, 3.0, 4, 6.0)

    # text summaries are stored as string tensors under the plugin's "tensors"
    assert "ppo/samples/text_summary" in tags["tensors"]
    text = acc.Tensors("ppo/samples/text_summary")[0]
    assert text.step == 1
    assert text.tensor_proto.string_val[0].decode() == "[INST] 2+2 [/INST] 4"


def test_bad_metric_values_and_names_raise(tmp_path):
    m = MetricsLogger(tmp_path, flush_secs=1)
    try:
        with pytest.raises(ValueError, match="ppo/reward must be a single number"):
            m.scalars("ppo", {"reward": [1.0, 2.0]}, step=0)
        with pytest.raises(ValueError, match="histogram ppo/r has non-finite"):
            m.histogram("ppo", "r", [1.0, float("nan")], step=0)
        with pytest.raises(ValueError, match="histogram ppo/r got no values"):
            m.histogram("ppo", "r", [], step=0)
        for bad in ("", "a//b", "/a", "a/"):
            with pytest.raises(ValueError, match="joined by single '/'"):
                m.scalars(bad, {"x": 1.0}, step=0)
        with pytest.raises(ValueError, match="seconds > 0"):
            m.throughput("ppo", "tok", count=1, seconds=0.0, step=0)
    finally:
        m.close()


def test_progress_is_disabled_under_ci_and_passes_items_through(monkeypatch):
    monkeypatch.setenv("CI", "1")
    assert metrics.progress_enabled() is False
    bar = progress(range(3), desc="x", total=3)
    assert bar.disable is True
    assert list(bar) == [0, 1, 2]
    monkeypatch.delenv("CI")
    monkeypatch.setattr(metrics.sys.stderr, "isatty", lambda: True)
    assert metrics.progress_enabled() is True
    assert progress(range(2), desc="x").disable is False
    assert progress(range(2), desc="x", enabled=False).disable is True  # logging.progress=false
