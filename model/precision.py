"""Whether to run forward passes under bf16 autocast: `true`, `false` or `"auto"`.

bf16 autocast pays only where the hardware has bf16 matmuls: CUDA devices that support bf16, and
CPUs with AVX512-BF16 or AMX. On a CPU without them (AVX2 only, e.g. the AMD EPYC kind of the 2-core
dev/CI machines) PyTorch emulates bf16 matmuls and a training step of the tiny model takes ~22x
longer than in fp32 (23 s against 1.05 s, measured 2026-11-30). `"auto"` turns autocast on exactly
where it pays; each actor resolves it on its own device, since the driver's machine may differ from
the workers' (a CPU head node driving GPU workers).
"""
from __future__ import annotations

import logging
from typing import Any

import torch

__all__ = ["AUTO", "AUTOCAST_CHOICES", "bf16_autocast_fast", "check_autocast_setting", "resolve_autocast_bf16"]

log = logging.getLogger(__name__)

AUTO = "auto"
AUTOCAST_CHOICES = "true, false or 'auto'"


def _cpu_flag(name: str) -> bool:
    fn = getattr(torch.cpu, name, None)  # private probes of torch.cpu (present in torch 2.x)
    try:
        return bool(fn()) if fn is not None else False
    except RuntimeError:
        return False


def bf16_autocast_fast(device: torch.device | str) -> bool:
    """True where bf16 matmuls run natively on `device`: CUDA with bf16, CPU with AVX512-BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_flag("_is_avx512_bf16_supported") or _cpu_flag("_is_amx_tile_supported")
    return False


def check_autocast_setting(key: str, setting: Any) -> list[str]:
    """Config errors (empty if fine) for a `true | false | "auto"` setting named `key`."""
    if isinstance(setting, bool) or setting == AUTO:
        return []
    return [f"{key}: expected {AUTOCAST_CHOICES}, got {setting!r}"]


def resolve_autocast_bf16(setting: Any, device: torch.device | str, where: str = "autocast_bf16") -> bool:
    """The bool a `true | false | "auto"` setting means on `device`; an explicit true on hardware without
    native bf16 is honoured with a warning (it is correct, only slow)."""
    errors = check_autocast_setting(where, setting)
    if errors:
        raise ValueError(errors[0])
    fast = bf16_autocast_fast(device)
    if setting == AUTO:
        log.info("%s: auto -> %s on %s", where, "bf16" if fast else "fp32 (no native bf16 matmuls)", torch.device(device))
        return fast
    if setting and not fast:
        log.warning("%s: bf16 autocast is on but %s has no native bf16 matmuls (CPU without AVX512-BF16/AMX, "
                    "or a GPU without bf16): it runs, but far slower than fp32; set it to 'auto' or false",
                    where, torch.device(device))
    return bool(setting)
