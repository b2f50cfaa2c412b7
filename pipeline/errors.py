"""One root exception, and subclasses that also inherit the matching builtin.

Every message names the file or option, what was found, and what to do about it, so that a nightly
log line is enough to fix the input without reading the code.
"""

from __future__ import annotations

__all__ = [
    "SceneSegError",
    "ConfigError",
    "SceneReadError",
    "SceneValidationError",
    "CheckpointError",
    "OutputError",
]


class SceneSegError(Exception):
    """Root of every error sceneseg raises on purpose."""


class ConfigError(SceneSegError, ValueError):
    """An option or setting has a value that cannot work."""


class SceneReadError(SceneSegError, OSError):
    """A scene file is missing, unreadable, or not a raster."""


class SceneValidationError(SceneSegError, ValueError):
    """A scene opens but does not fit the model (bands, CRS, dtype, size)."""


class CheckpointError(SceneSegError, ValueError):
    """A checkpoint is missing, corrupt, unsafe, or of an unknown format."""


class OutputError(SceneSegError, OSError):
    """An output cannot be written, or an existing one is in the way."""
