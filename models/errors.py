"""The root of every error sceneseg raises on purpose, and the kinds the model layer itself raises.

They live here, in the bottom layer, so that ``models`` imports nothing else of the project while every
package still shares one root; ``pipeline.errors`` re-exports them beside the scene errors. Each class
also inherits the matching builtin, as ``rasterio.errors`` does, so ``except ValueError`` keeps working.
Every message names the file or option, what was found, and what to do about it.
"""

from __future__ import annotations

__all__ = ["SceneSegError", "ConfigError", "CheckpointError", "OutputError"]


class SceneSegError(Exception):
    """Root of every error sceneseg raises on purpose."""


class ConfigError(SceneSegError, ValueError):
    """An option or setting has a value that cannot work."""


class CheckpointError(SceneSegError, ValueError):
    """A checkpoint is missing, corrupt, unsafe, or of an unknown format."""


class OutputError(SceneSegError, OSError):
    """An output cannot be written, or an existing one is in the way."""
