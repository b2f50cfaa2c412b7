"""Which torch device and autocast precision a run uses: one rule for inference and training."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from models.errors import ConfigError

__all__ = ["Precision", "resolve_device", "autocast_dtype", "autocast"]

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


def autocast_dtype(device: torch.device, precision: Precision) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``; None runs in fp32.

    ``auto`` is bf16 on CUDA and fp32 on the CPU.
    """
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16":
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
