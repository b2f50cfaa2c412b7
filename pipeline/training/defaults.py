"""The defaults of training, in one place: ``TrainConfig``'s fields and the ``sceneseg train`` options.

Kept apart from ``train`` (which imports torch) so that the command line reads them without the engine.
"""

from __future__ import annotations

__all__ = ["TRAIN_DEFAULTS"]

TRAIN_DEFAULTS: dict[str, object] = {
    "epochs": 20,
    "steps_per_epoch": 50,
    "batch_size": 8,
    "tile_size": 256,
    "lr": 2e-3,
    "loss": "ce",
    "seed": 0,
}
