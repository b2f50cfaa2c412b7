"""Which torch device and autocast precision a run uses: one rule for inference and training."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Literal

import torch

from models.errors import ConfigError

__all__ = ["Precision", "resolve_device", "cpu_flags", "choose_precision", "autocast_dtype", "autocast"]

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU.

    Raises:
        ConfigError: the name is no torch device, or names a CUDA device this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name!r} is not a torch device name ({exc}). Use auto, cpu, cuda or cuda:N.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA device is visible to torch on this machine. "
                              "Use --device cpu, or install the CUDA build of torch (see README).")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
    return device


#: CPU features with bf16 matrix instructions: AMX tiles (Sapphire Rapids and later) and AVX512-BF16
#: (Cooper Lake, Zen 4 and later). Without them torch emulates bf16, slower than fp32.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of this machine's CPU (Linux ``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def choose_precision(
    device: torch.device, precision: Precision, flags: frozenset[str] | None = None
) -> tuple[torch.dtype | None, str]:
    """The autocast dtype of ``precision`` on ``device`` (None: fp32) and why, in words for the run record.

    ``auto`` is bf16 on CUDA and on a CPU with native bf16 (:data:`NATIVE_BF16_FLAGS`; read at run time,
    since one image runs on many CPUs), fp32 on other CPUs. ``flags`` overrides the CPU's own (tests).
    """
    if precision == "fp32":
        return None, "fp32 asked for"
    if precision == "fp16":
        return torch.float16, "fp16 asked for"
    if precision == "bf16":
        return torch.bfloat16, "bf16 asked for"
    if device.type == "cuda":
        return torch.bfloat16, "auto: bf16 autocast on CUDA"
    native = NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags)
    if native:
        return torch.bfloat16, f"auto: the CPU has native bf16 ({', '.join(sorted(native))})"
    return None, "auto: fp32, the CPU has no native bf16 (amx_bf16 or avx512_bf16)"


def autocast_dtype(device: torch.device, precision: Precision) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``; None runs in fp32 (see :func:`choose_precision`)."""
    return choose_precision(device, precision)[0]


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
