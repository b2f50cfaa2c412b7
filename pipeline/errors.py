"""One root exception, and subclasses that also inherit the matching builtin.

Every message names the file or option, what was found, and what to do about it, so that a nightly
log line is enough to fix the input without reading the code. The root and the kinds the model layer
raises are defined in ``models.errors`` (the bottom layer); the scene errors are the engine's own.
"""

from __future__ import annotations

import errno
import os

from models.errors import CheckpointError, ConfigError, OutputError, SceneSegError

__all__ = [
    "SceneSegError",
    "ConfigError",
    "SceneReadError",
    "SceneValidationError",
    "CheckpointError",
    "OutputError",
    "scene_failure_message",
]


class SceneReadError(SceneSegError, OSError):
    """A scene file is missing, unreadable, or not a raster."""


class SceneValidationError(SceneSegError, ValueError):
    """A scene opens but does not fit the model (bands, CRS, dtype, size)."""


def scene_failure_message(scene: str | os.PathLike[str], exc: BaseException) -> str:
    """One message for any failure of a scene, sceneseg's or a library's: the file, what went wrong, what to do."""
    path = os.fspath(scene)
    if isinstance(exc, SceneSegError):
        message = str(exc)
        return message if path in message else f"{path}: {message}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"{path}: no space left on the device ({exc}). Free space on the disk of --out and run the same "
                "command again: it resumes where it stopped.")
    if isinstance(exc, MemoryError):
        return f"{path}: out of memory. Lower --max-in-flight or --block-size and run again."
    if isinstance(exc, OSError):
        return f"{path}: {exc}. Check the file, and that --out is writable, then run again."
    return (f"{path}: unexpected {type(exc).__name__}: {exc}. Run the same command with --debug for the "
            "traceback, and report it.")
