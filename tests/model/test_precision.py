"""bf16 autocast: true | false | "auto", resolved per device (model/precision.py)."""
import logging
from pathlib import Path

import pytest
import torch

from model.precision import bf16_autocast_fast, check_autocast_setting, resolve_autocast_bf16


def _cpuinfo_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    line = next(line for line in text.splitlines() if line.startswith("flags"))
    return set(line.split(":", 1)[1].split())


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the kernel's CPU flags (Linux)")
def test_cpu_probe_agrees_with_the_kernels_cpu_flags():
    flags = _cpuinfo_flags()
    assert bf16_autocast_fast("cpu") == bool({"avx512_bf16", "amx_tile", "amx_bf16"} & flags)


def test_auto_follows_the_device_and_explicit_settings_are_kept(caplog):
    fast = bf16_autocast_fast("cpu")
    assert resolve_autocast_bf16("auto", "cpu") is fast
    assert resolve_autocast_bf16(False, torch.device("cpu")) is False
    with caplog.at_level(logging.WARNING, logger="model.precision"):
        assert resolve_autocast_bf16(True, "cpu", "learner autocast_bf16") is True
    # a forced bf16 on a CPU without native bf16 is honoured, with a warning naming the setting
    assert ("learner autocast_bf16" in caplog.text) is (not fast)


@pytest.mark.parametrize("bad", ["yes", "on", None, 1, 0.0])
def test_other_values_are_errors_naming_the_key(bad):
    assert check_autocast_setting("model.autocast_bf16", bad) == [
        f"model.autocast_bf16: expected true, false or 'auto', got {bad!r}"]
    with pytest.raises(ValueError, match="reference autocast_bf16: expected true, false or 'auto'"):
        resolve_autocast_bf16(bad, "cpu", "reference autocast_bf16")
    assert check_autocast_setting("k", "auto") == [] and check_autocast_setting("k", True) == []
