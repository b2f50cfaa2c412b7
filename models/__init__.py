"""The U-Net family, checkpoints that carry their metadata, losses and augmentation: torch only, the bottom layer.

The names below are imported on first use (PEP 562), not with the package: ``models.errors`` is the root of
every sceneseg error and is imported everywhere, also by processes that never touch torch (the vector
stage's chunk process, ``sceneseg --help``), which must not pay torch's 3 s and 200 MB to start.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoadedModel": "models.checkpoint",
    "ModelCard": "models.checkpoint",
    "available_checkpoints": "models.checkpoint",
    "checkpoint_id": "models.checkpoint",
    "find_checkpoint": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "save_checkpoint": "models.checkpoint",
    "available_models": "models.factory",
    "create_model": "models.factory",
    "UNet": "models.unet",
    "UNetPlusPlus": "models.unetpp",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
