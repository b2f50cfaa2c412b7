"""File-system helpers every writer of outputs shares: temporary names beside a target, live writers."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_path", "process_alive"]


def atomic_path(dst: Path) -> Path:
    """A temporary name beside ``dst`` (same filesystem, so ``os.replace`` is atomic), tagged with our pid."""
    return dst.with_name(f".{dst.name}.{os.getpid()}.tmp")


def process_alive(pid: int) -> bool:
    """Whether a process of that id runs on this machine: a temporary it named is still being written."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
