"""The U-Net family, checkpoints that carry their metadata, losses and augmentation: torch only, the bottom layer."""

from __future__ import annotations

from models.checkpoint import (
    LoadedModel,
    ModelCard,
    available_checkpoints,
    checkpoint_id,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from models.factory import available_models, create_model
from models.unet import UNet
from models.unetpp import UNetPlusPlus

__all__ = [
    "UNet",
    "UNetPlusPlus",
    "create_model",
    "available_models",
    "ModelCard",
    "LoadedModel",
    "save_checkpoint",
    "load_checkpoint",
    "find_checkpoint",
    "available_checkpoints",
    "checkpoint_id",
]
