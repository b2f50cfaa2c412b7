"""One root exception, and subclasses that also inherit the matching builtin.

Every message names the file or option, what was found, and what to do about it, so that a nightly
log line is enough to fix the input without reading the code. The root and the kinds the model layer
raises are defined in ``models.errors`` (the bottom layer); the scene errors are the engine's own.
"""

from __future__ import annotations

from models.errors import CheckpointError, ConfigError, OutputError, SceneSegError

__all__ = [
    "SceneSegError",
    "ConfigError",
    "SceneReadError",
    "SceneValidationError",
    "CheckpointError",
    "OutputError",
]


class SceneReadError(SceneSegError, OSError):
    """A scene file is missing, unreadable, or not a raster."""


class SceneValidationError(SceneSegError, ValueError):
    """A scene opens but does not fit the model (bands, CRS, dtype, size)."""
